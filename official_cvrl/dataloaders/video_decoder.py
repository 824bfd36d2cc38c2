"""Decoder of video SequenceExamples: serialized record -> dict of raw tensors (frames stay JPEG-encoded).

The record layout is the one of `feature_keys`: one JPEG per step in the sequence feature `image/encoded` and the
class indices in the context feature `clip/label/index`, as written by Model Garden's and DMVR's tooling, so
records made for Model Garden decode here unchanged. Every other context key is optional metadata, returned with
a default when absent:

| key                     | dtype  | shape | default                                 |
| ----------------------- | ------ | ----- | --------------------------------------- |
| clip/label/index        | int64  | [L]   | [] (unlabeled; the parser reports -1)   |
| clip/label/string       | string | [L]   | []                                      |
| clip/data_path          | string | []    | '' (video id, used in error messages)   |
| clip/fps                | float  | []    | -1 (unknown)                            |
| clip/source_fps         | float  | []    | -1                                      |
| clip/num_frames         | int64  | []    | -1                                      |
| image/height            | int64  | []    | -1                                      |
| image/width             | int64  | []    | -1                                      |
| clip/start/timestamp    | int64  | []    | -1                                      |
| clip/end/timestamp      | int64  | []    | -1                                      |
"""
from typing import Dict

import tensorflow as tf

from official.vision.dataloaders import decoder
from official_cvrl.dataloaders import feature_keys

_UNKNOWN = -1


def _optional_context_features() -> Dict[str, tf.io.FixedLenFeature]:
  return {
      feature_keys.VIDEO_ID_KEY: tf.io.FixedLenFeature((), tf.string, default_value=''),
      feature_keys.FPS_KEY: tf.io.FixedLenFeature((), tf.float32, default_value=float(_UNKNOWN)),
      feature_keys.SOURCE_FPS_KEY: tf.io.FixedLenFeature((), tf.float32, default_value=float(_UNKNOWN)),
      feature_keys.NUM_FRAMES_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=_UNKNOWN),
      feature_keys.HEIGHT_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=_UNKNOWN),
      feature_keys.WIDTH_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=_UNKNOWN),
      feature_keys.START_TIMESTAMP_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=_UNKNOWN),
      feature_keys.END_TIMESTAMP_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=_UNKNOWN),
  }


class Decoder(decoder.Decoder):
  """Parses a video `tf.train.SequenceExample` into raw tensors keyed by feature key."""

  def __init__(self, image_key: str = feature_keys.IMAGE_KEY, label_key: str = feature_keys.LABEL_INDEX_KEY):
    """Initialises the decoder.

    Args:
      image_key: sequence feature holding one encoded frame per step.
      label_key: context feature holding the int64 class indices (absent for unlabeled videos).
    """
    self._image_key = image_key
    self._label_key = label_key
    self._context_features = _optional_context_features()
    self._context_features[label_key] = tf.io.VarLenFeature(tf.int64)
    self._context_features[feature_keys.LABEL_STRING_KEY] = tf.io.VarLenFeature(tf.string)
    self._sequence_features = {image_key: tf.io.FixedLenSequenceFeature((), tf.string)}

  def decode(self, serialized_example: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized SequenceExample.

    Args:
      serialized_example: string scalar.

    Returns:
      A dict with `image_key`: string `[num_frames]` encoded frames, `label_key`: int64 `[L]` class indices
      (`[0]` when unlabeled) and the metadata keys of the module docstring.
    """
    context, sequence = tf.io.parse_single_sequence_example(
        serialized_example, context_features=self._context_features, sequence_features=self._sequence_features)
    decoded = dict(context)
    decoded.update(sequence)
    for key, value in decoded.items():
      if isinstance(value, tf.SparseTensor):
        decoded[key] = tf.sparse.to_dense(value)
    return decoded
