"""Tiny labelled video SequenceExamples for the classification pipeline and task tests (built with encode_jpeg)."""
import os
from typing import List, Optional, Sequence

import numpy as np
import tensorflow as tf

from official_cvrl.dataloaders import feature_keys

VALUE_STEP = 10  # Frame i of an index-coded video is the constant grey level 10 * i.


def video_record(frames: np.ndarray, label: Optional[int] = None, video_id: Optional[str] = None) -> bytes:
  """A serialized SequenceExample: one JPEG per frame of uint8 `[N, H, W, 3]`, a class index and an id."""
  example = tf.train.SequenceExample()
  frame_list = example.feature_lists.feature_list[feature_keys.IMAGE_KEY]
  for frame in frames:
    frame_list.feature.add().bytes_list.value.append(tf.io.encode_jpeg(frame, quality=95).numpy())
  context = example.context.feature
  if label is not None:
    context[feature_keys.LABEL_INDEX_KEY].int64_list.value.append(label)
  if video_id is not None:
    context[feature_keys.VIDEO_ID_KEY].bytes_list.value.append(video_id.encode())
  return example.SerializeToString()


def index_coded_frames(num_frames: int, height: int, width: int) -> np.ndarray:
  """Flat frames whose grey level encodes their index, so sampled indices can be read back from the pixels."""
  return np.stack([np.full((height, width, 3), VALUE_STEP * i, np.uint8) for i in range(num_frames)])


def frame_indices(clip: np.ndarray) -> np.ndarray:
  """uint8 `[T, H, W, 3]` clip of index-coded frames -> `[T]` frame indices."""
  return np.round(clip.reshape(clip.shape[0], -1).mean(axis=1) / VALUE_STEP).astype(int)


def random_videos(num_videos: int, num_classes: int, num_frames: int, height: int, width: int,
                  seed: int = 0) -> List[bytes]:
  """Videos whose mean colour depends on the class (learnable in a few steps), labels cycling over classes."""
  rng = np.random.default_rng(seed)
  records = []
  for i in range(num_videos):
    label = i % num_classes
    base = (np.array([label * 97 % 256, label * 41 % 256, 255 - label * 67 % 256], np.float32))
    noise = rng.normal(0, 20, (num_frames, height, width, 3))
    frames = np.clip(base + noise, 0, 255).astype(np.uint8)
    records.append(video_record(frames, label=label, video_id=f'video_{i}'))
  return records


def write_shards(folder: str, prefix: str, records: Sequence[bytes], num_shards: int = 2) -> str:
  """Writes `records` round-robin into `<folder>/<prefix>-0000k-of-0000n.tfrecord`; returns their glob."""
  os.makedirs(folder, exist_ok=True)
  paths = [os.path.join(folder, f'{prefix}-{k:05d}-of-{num_shards:05d}.tfrecord') for k in range(num_shards)]
  writers = [tf.io.TFRecordWriter(path) for path in paths]
  for i, record in enumerate(records):
    writers[i % num_shards].write(record)
  for writer in writers:
    writer.close()
  return os.path.join(folder, f'{prefix}-*-of-{num_shards:05d}.tfrecord')
