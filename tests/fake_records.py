"""Tiny SequenceExample TFRecords with JPEG frames, built directly with tf.io.encode_jpeg.

(Model Garden's `tfexample_utils.make_video_test_example` breaks under NumPy 2.4, hence our own.)
"""
import numpy as np
import tensorflow as tf

from official_cvrl.dataloaders import feature_keys


def make_sequence_example(frames: np.ndarray, label: int, video_id: str) -> tf.train.SequenceExample:
  """frames: uint8 [T, H, W, 3]."""
  example = tf.train.SequenceExample()
  example.context.feature[feature_keys.LABEL_INDEX_KEY].int64_list.value.append(label)
  example.context.feature[feature_keys.VIDEO_ID_KEY].bytes_list.value.append(video_id.encode())
  frame_list = example.feature_lists.feature_list[feature_keys.IMAGE_KEY]
  for frame in frames:
    frame_list.feature.add().bytes_list.value.append(tf.io.encode_jpeg(frame, quality=95).numpy())
  return example


def moving_square_frames(num_frames: int, height: int, width: int, direction: int, rng: np.random.Generator):
  """A bright square moving right (direction 0) or left (1) over noise: labels need motion."""
  frames = rng.integers(0, 40, size=(num_frames, height, width, 3), dtype=np.uint8)
  x = int(rng.integers(0, width))
  y = int(rng.integers(0, height - 8))
  for t in range(num_frames):
    left = (x + (2 * t if direction == 0 else -2 * t)) % (width - 8)
    frames[t, y:y + 8, left:left + 8] = 230
  return frames


def write_records(path: str, num_videos: int, num_frames: int = 12, height: int = 40, width: int = 48,
                  num_classes: int = 2, seed: int = 0) -> str:
  """Writes `num_videos` labelled videos (label = i % num_classes) to one TFRecord file; returns `path`."""
  rng = np.random.default_rng(seed)
  with tf.io.TFRecordWriter(path) as writer:
    for i in range(num_videos):
      label = i % num_classes
      frames = moving_square_frames(num_frames, height, width, label % 2, rng)
      writer.write(make_sequence_example(frames, label, f'video_{i:04d}').SerializeToString())
  return path
