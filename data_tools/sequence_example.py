"""Builds the tf.train.SequenceExample of one video with the project's feature keys.

The layout is the one Model Garden's `video_input.Decoder` and DMVR read: JPEG frames as the sequence feature
`image/encoded`, class indices in the context feature `clip/label/index`, plus optional metadata (label names,
video id, frame rates, size, time span) that readers must not require. Keys come from
`official_cvrl.dataloaders.feature_keys` so writer and readers cannot drift apart.
"""

from typing import Optional, Sequence

import numpy as np
import tensorflow as tf

from official_cvrl.dataloaders import feature_keys

DEFAULT_JPEG_QUALITY = 90


def encode_jpeg(frame: np.ndarray, quality: int = DEFAULT_JPEG_QUALITY) -> bytes:
  """Encodes one frame.

  Args:
    frame: [H, W, 3] uint8 RGB.
    quality: JPEG quality, 1-100.

  Returns:
    The JPEG bytes (deterministic for equal inputs, which keeps shards byte-identical across runs).
  """
  return tf.io.encode_jpeg(frame, format='rgb', quality=quality).numpy()


def _bytes(values: Sequence[bytes]) -> tf.train.Feature:
  return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def _int64(values: Sequence[int]) -> tf.train.Feature:
  return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _float(values: Sequence[float]) -> tf.train.Feature:
  return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def make_sequence_example(encoded_frames: Sequence[bytes], *, video_id: str, height: int, width: int,
                          fps: float, source_fps: float, label_indices: Sequence[int] = (),
                          label_names: Sequence[str] = (), start: Optional[float] = None,
                          end: Optional[float] = None) -> tf.train.SequenceExample:
  """Assembles a SequenceExample.

  Args:
    encoded_frames: T JPEG-encoded frames, in time order.
    video_id: stable id of the video (stored as `clip/data_path`).
    height: frame height in pixels.
    width: frame width in pixels.
    fps: frame rate of the stored frames.
    source_fps: frame rate of the source file.
    label_indices: class indices; empty for unlabeled videos, which get `feature_keys.UNLABELED_INDEX`.
    label_names: class names in the same order as `label_indices`.
    start: optional start (seconds) of the span cut from a longer video.
    end: optional end (seconds) of that span.

  Returns:
    The SequenceExample.

  Raises:
    ValueError: when there are no frames or labels and names disagree in length.
  """
  if not encoded_frames:
    raise ValueError(f'{video_id}: a SequenceExample needs at least one frame.')
  if label_names and len(label_names) != len(label_indices):
    raise ValueError(f'{video_id}: {len(label_indices)} label indices but {len(label_names)} label names.')
  context = {
      feature_keys.LABEL_INDEX_KEY: _int64(label_indices or [feature_keys.UNLABELED_INDEX]),
      feature_keys.VIDEO_ID_KEY: _bytes([video_id.encode('utf-8')]),
      feature_keys.SOURCE_FPS_KEY: _float([source_fps]),
      feature_keys.FPS_KEY: _float([fps]),
      feature_keys.NUM_FRAMES_KEY: _int64([len(encoded_frames)]),
      feature_keys.HEIGHT_KEY: _int64([height]),
      feature_keys.WIDTH_KEY: _int64([width]),
  }
  if label_names:
    context[feature_keys.LABEL_STRING_KEY] = _bytes([n.encode('utf-8') for n in label_names])
  if start is not None:
    context[feature_keys.START_TIMESTAMP_KEY] = _int64([round(start * 1e6)])
  if end is not None:
    context[feature_keys.END_TIMESTAMP_KEY] = _int64([round(end * 1e6)])
  frames = tf.train.FeatureList(feature=[_bytes([f]) for f in encoded_frames])
  return tf.train.SequenceExample(
      context=tf.train.Features(feature=context),
      feature_lists=tf.train.FeatureLists(feature_list={feature_keys.IMAGE_KEY: frames}))
