"""The tf.Module exported for TF Serving: video clips or TFRecord SequenceExamples in, CVRL embeddings out.

Model Garden's generic video export returns classification logits for one centre clip and crop. CVRL is used for
its representation, so this module returns the encoder's pooled features, computed the way the evaluation
pipeline computes them: the centre square of each frame (side = short side) resized to the crop size, pixels
scaled to [0, 1], the model run in inference mode (batch norm with its moving statistics).

Signatures (`SIGNATURE_*` below; every input is a batch):

  serving_default     clips     uint8 [batch, T, H, W, 3]      -> one output row per clip
  serve_video_clips   clips     uint8 [batch, C, T, H, W, 3]   -> one row per video, averaged over its C clips
  serve_examples      examples  string [batch]                 -> one row per video, averaged over `num_clips`
                                                                  evenly spaced clips x `num_crops` (1: centre,
                                                                  3: 3-crop testing) views (+ video_id, label)

H and W are free (frames are resized inside); T may differ from the training clip length (the encoder pools over
time), but the features match those of evaluation only for the configured `num_frames`. `serve_examples` takes
serialized `tf.train.SequenceExample`s in the project's TFRecord layout (`dataloaders.feature_keys`: one JPEG per
step under 'image/encoded'), so a client can send a record straight from a dataset.

Outputs, all float32 `[batch, D]`:
  features             the global-average-pooled backbone output (2048 * width for R3D-50, 512 * width for R3D-18);
  normalized_features  `features` divided by its L2 norm (the input of a linear-evaluation classifier, and what
                       cosine-similarity retrieval compares);
  projection           the projection head's output, when the model has one (pretraining checkpoints);
  logits, probabilities  classifier outputs and their softmax, when the model is a classifier.
Multi-clip averaging averages every output over the clips of a video, except `normalized_features`, which is
recomputed from the averaged features so it stays a unit vector.

The clip geometry the module was exported with is stored in the SavedModel as int32 scalar variables
`num_frames`, `temporal_stride`, `crop_size`, `num_clips` and `num_crops` (e.g.
`tf.saved_model.load(path).crop_size`).
"""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.core import export_base
from official_cvrl.dataloaders import feature_keys
from official_cvrl.dataloaders import video_decoder
from official_cvrl.ops import multi_view
from official_cvrl.ops import video_augment
from official_cvrl.utils import errors

SIGNATURE_CLIPS = tf.saved_model.DEFAULT_SERVING_SIGNATURE_DEF_KEY  # 'serving_default'
SIGNATURE_VIDEO_CLIPS = 'serve_video_clips'
SIGNATURE_EXAMPLES = 'serve_examples'

INPUT_CLIPS = 'clips'
INPUT_EXAMPLES = 'examples'

FEATURES = 'features'
NORMALIZED_FEATURES = 'normalized_features'
PROJECTION = 'projection'
LOGITS = 'logits'
PROBABILITIES = 'probabilities'
VIDEO_ID = 'video_id'
LABEL = 'label'

# Name of the pooling layer of `cvrl_model.VideoClassifier`, whose output is the representation.
_POOL_LAYER = 'global_pool'

_CLIPS_SHAPE = [None, None, None, None, 3]
_VIDEO_CLIPS_SHAPE = [None, None, None, None, None, 3]
_CLIPS_HINT = 'expected uint8 clips [batch, T, H, W, 3] with T, H, W >= 1'
_VIDEO_CLIPS_HINT = 'expected uint8 clips [batch, num_clips, T, H, W, 3] with num_clips, T, H, W >= 1'


def feature_extractor(model: tf_keras.Model) -> tf_keras.Model:
  """Returns a Keras model with the same weights whose output is a dict holding 'features'.

  Args:
    model: a `CVRLModel` (outputs {'features', 'projection'}) or a `VideoClassifier` (outputs logits; its
      'global_pool' layer gives the features).

  Returns:
    `model` itself when it already outputs 'features', else a functional model over the same layers returning
    {'features', 'logits'}.

  Raises:
    UserInputError: when the model has neither a 'features' output nor a 'global_pool' layer.
  """
  if isinstance(model.output, Mapping) and FEATURES in model.output:
    return model
  try:
    pool = model.get_layer(_POOL_LAYER)
  except ValueError:
    raise errors.UserInputError(
        f'Cannot export {type(model).__name__}: it has no "{FEATURES}" output and no "{_POOL_LAYER}" layer. '
        'Export a model built by the "cvrl" or "cvrl_classifier" builder (task.model.model_type).') from None
  return tf_keras.Model(model.inputs, {FEATURES: pool.output, LOGITS: model.output},
                        name=f'{model.name}_features')


def backbone_features_model(model: tf_keras.Model) -> tf_keras.Model:
  """A model over `model`'s layers returning only {'features'}.

  For a checkpoint that holds only the backbone (a released CVRL backbone): the projection head or classifier of
  the experiment's model would stay random, so their outputs are not served.
  """
  features = feature_extractor(model)
  return tf_keras.Model(features.inputs, {FEATURES: features.output[FEATURES]}, name=f'{model.name}_backbone')


def _check_positive_dims(shape: tf.Tensor, first: int, hint: str, name: str) -> tf.Operation:
  """In-graph check that dims `first..-2` of `shape` are >= 1 (the dims are unknown when tracing, so the check
  stays in the graph and also runs in TF Serving)."""
  return tf.debugging.Assert(
      tf.reduce_all(shape[first:-1] > 0),
      [f'Bad {name} input: {hint}; got shape', shape], summarize=8, name=f'check_{name}_not_empty')


def _checked_clips(clips: tf.Tensor, expected_shape, hint: str) -> tf.Tensor:
  """Returns `clips` after in-graph checks of its rank and of non-empty dimensions (after the batch).

  A signature's input shape is not enforced when it is called (TF Serving and `signatures[...]` check only the
  dtype), so the rank is checked by an EnsureShape op, which grappler cannot fold away, and empty dimensions by
  a runtime assertion, both before any op that would fail with a less readable message.
  """
  clips = tf.ensure_shape(clips, expected_shape, name=f'expect_{len(expected_shape)}d_clips')
  check = _check_positive_dims(tf.shape(clips), 1, hint, INPUT_CLIPS)
  with tf.control_dependencies([check]):
    return tf.identity(clips)


def center_crop_and_resize(clips: tf.Tensor, crop_size: int) -> tf.Tensor:
  """Takes the centre square of each frame (side = short side) and resizes it (bilinear) to `crop_size`.

  The single-crop view of the evaluation pipeline (`dataloaders.classification_input`, with the same ops), so
  served features equal those the evaluation computes. Frames already `crop_size` square pass unchanged.

  Args:
    clips: uint8 `[batch, T, H, W, 3]`, H and W >= 1.
    crop_size: side of the output square.

  Returns:
    uint8 `[batch, T, crop_size, crop_size, 3]`.
  """
  window = video_augment.central_crop_window(tf.shape(clips)[2:4])
  return multi_view.crop_and_resize_views(clips, window[tf.newaxis], crop_size)


def _first_label(labels: tf.Tensor) -> tf.Tensor:
  """The first class index as int64, or `UNLABELED_INDEX` when the list is empty."""
  labels = tf.concat([tf.reshape(tf.cast(labels, tf.int64), [-1]),
                      tf.constant([feature_keys.UNLABELED_INDEX], tf.int64)], axis=0)
  return labels[0]


def sample_clips_from_example(serialized: tf.Tensor,
                              num_clips: int,
                              num_frames: int,
                              temporal_stride: int,
                              crop_size: int,
                              image_key: str = feature_keys.IMAGE_KEY,
                              label_key: str = feature_keys.LABEL_INDEX_KEY,
                              num_crops: int = 1) -> Dict[str, tf.Tensor]:
  """Decodes one SequenceExample into `num_clips` evenly spaced clips x `num_crops` spatial views.

  The evaluation pipeline's views (`ops.multi_view`): clip starts evenly spaced from the first frame to the
  last possible one (one clip = the centre clip), videos shorter than a clip loop, each distinct frame decoded
  once however many clips use it; the centre square (1 crop) or both ends and the centre of the long side
  (3 crops), resized to `crop_size`.

  Args:
    serialized: string scalar, one serialized `tf.train.SequenceExample`.
    num_clips: clips to sample (Python int >= 1).
    num_frames: frames per clip.
    temporal_stride: stride between the frames of a clip.
    crop_size: side of the output frames.
    image_key: sequence feature holding the JPEG frames.
    label_key: context feature holding the class indices.
    num_crops: spatial views per clip, 1 or 3.

  Returns:
    {'clips': uint8 `[num_clips * num_crops, num_frames, crop_size, crop_size, 3]` (the crops of a clip
    adjacent), 'video_id': string scalar (empty when the record has none), 'label': int64 scalar (first class
    index, -1 when unlabeled)}.
  """
  decoded = video_decoder.Decoder(image_key=image_key, label_key=label_key).decode(serialized)
  encoded = decoded[image_key]
  video_id = decoded[feature_keys.VIDEO_ID_KEY]
  indices = multi_view.clips_frame_indices(tf.shape(encoded)[0], num_frames, temporal_stride, num_clips,
                                           video_id=video_id)
  clips = multi_view.crop_test_views(multi_view.decode_frames_once(encoded, indices), crop_size, num_crops)
  clips = tf.ensure_shape(clips, [num_clips * num_crops, num_frames, crop_size, crop_size, 3])
  return {'clips': clips, VIDEO_ID: video_id, LABEL: _first_label(decoded[label_key])}


class CVRLExportModule(export_base.ExportModule):
  """Serving module around a CVRL pretraining model or an evaluation classifier (see the module docstring)."""

  def __init__(self,
               params: Any,
               model: tf_keras.Model,
               num_frames: int,
               temporal_stride: int,
               crop_size: int,
               num_clips: int = 1,
               image_key: str = feature_keys.IMAGE_KEY,
               label_key: str = feature_keys.LABEL_INDEX_KEY,
               num_crops: int = 1):
    """Wraps a model for export.

    Args:
      params: the experiment config (kept for reference, as Model Garden's export modules do).
      model: a built `CVRLModel` or `VideoClassifier` (weights restored), taking float clips in [0, 1] of
        `crop_size` x `crop_size` pixels and any number of frames.
      num_frames: frames per clip sampled by `serve_examples` (the evaluation clip length).
      temporal_stride: stride between those frames.
      crop_size: side of the square frames the model sees.
      num_clips: clips per video sampled and averaged by `serve_examples`.
      image_key: SequenceExample key of the JPEG frames.
      label_key: SequenceExample key of the class indices.
      num_crops: spatial views per clip sampled and averaged by `serve_examples`: 1 (centre) or 3.

    Raises:
      ValueError: on a non-positive clip geometry or a crop count other than 1 or 3.
    """
    for name, value in (('num_frames', num_frames), ('temporal_stride', temporal_stride),
                        ('crop_size', crop_size), ('num_clips', num_clips)):
      if value < 1:
        raise ValueError(f'{name} must be >= 1, got {value}.')
    if num_crops not in multi_view.TEST_CROP_COUNTS:
      raise ValueError(f'num_crops must be 1 or 3, got {num_crops}.')
    super().__init__(params, model=feature_extractor(model),
                     inference_step=lambda inputs, model: model(inputs, training=False))
    self._num_frames = num_frames
    self._temporal_stride = temporal_stride
    self._crop_size = crop_size
    self._num_clips = num_clips
    self._num_crops = num_crops
    self._image_key = image_key
    self._label_key = label_key
    output_names = set(self.model.output)
    self._has_projection = PROJECTION in output_names
    self._has_logits = LOGITS in output_names
    # Saved with the model so clients (and `extract_features`) can read the geometry back.
    self.num_frames = tf.Variable(num_frames, dtype=tf.int32, trainable=False, name='num_frames')
    self.temporal_stride = tf.Variable(temporal_stride, dtype=tf.int32, trainable=False, name='temporal_stride')
    self.crop_size = tf.Variable(crop_size, dtype=tf.int32, trainable=False, name='crop_size')
    self.num_clips = tf.Variable(num_clips, dtype=tf.int32, trainable=False, name='num_clips')
    self.num_crops = tf.Variable(num_crops, dtype=tf.int32, trainable=False, name='num_crops')

  def _embed(self, clips: tf.Tensor) -> Dict[str, tf.Tensor]:
    """uint8 `[N, T, crop, crop, 3]` clips -> per-clip outputs, float32 `[N, D]` each."""
    images = tf.cast(clips, tf.float32) / 255.0
    outputs = self.inference_step(images)
    features = tf.cast(outputs[FEATURES], tf.float32)
    result = {FEATURES: features, NORMALIZED_FEATURES: tf.math.l2_normalize(features, axis=-1)}
    if self._has_projection:
      result[PROJECTION] = tf.cast(outputs[PROJECTION], tf.float32)
    if self._has_logits:
      logits = tf.cast(outputs[LOGITS], tf.float32)
      result[LOGITS] = logits
      result[PROBABILITIES] = tf.nn.softmax(logits, axis=-1)
    return result

  def _average_clips(self, outputs: Dict[str, tf.Tensor], num_videos: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Per-clip outputs `[num_videos * C, D]` (clips of a video adjacent) -> per-video means `[num_videos, D]`."""
    averaged = {}
    for key, value in outputs.items():
      per_video = tf.reshape(value, [num_videos, -1, tf.shape(value)[-1]])
      averaged[key] = tf.reduce_mean(per_video, axis=1)
    averaged[NORMALIZED_FEATURES] = tf.math.l2_normalize(averaged[FEATURES], axis=-1)
    return averaged

  @tf.function
  def serve(self, clips: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Embeds each clip.

    Args:
      clips: uint8 `[batch, T, H, W, 3]`.

    Returns:
      Per-clip outputs (see the module docstring), float32 `[batch, D]` each.
    """
    clips = _checked_clips(clips, _CLIPS_SHAPE, _CLIPS_HINT)
    return self._embed(center_crop_and_resize(clips, self._crop_size))

  @tf.function
  def serve_video_clips(self, clips: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Embeds videos given as several clips each, averaging over the clips of a video.

    Args:
      clips: uint8 `[batch, num_clips, T, H, W, 3]`.

    Returns:
      Per-video outputs, float32 `[batch, D]` each.
    """
    clips = _checked_clips(clips, _VIDEO_CLIPS_SHAPE, _VIDEO_CLIPS_HINT)
    shape = tf.shape(clips)
    flat = tf.reshape(clips, tf.concat([[-1], shape[2:]], axis=0))
    outputs = self._embed(center_crop_and_resize(flat, self._crop_size))
    return self._average_clips(outputs, shape[0])

  @tf.function
  def serve_examples(self, examples: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Embeds videos sent as serialized SequenceExamples, averaging `num_clips` x `num_crops` views each.

    Args:
      examples: string `[batch]` serialized `tf.train.SequenceExample`s.

    Returns:
      Per-video outputs, float32 `[batch, D]` each, plus 'video_id' (string `[batch]`, the records'
      'clip/data_path') and 'label' (int64 `[batch]`, first class index or -1).
    """
    examples = tf.ensure_shape(examples, [None], name='expect_1d_examples')
    num_views = self._num_clips * self._num_crops
    clip_spec = tf.TensorSpec([num_views, self._num_frames, self._crop_size, self._crop_size, 3], tf.uint8)
    sampled = tf.map_fn(
        lambda serialized: sample_clips_from_example(
            serialized, self._num_clips, self._num_frames, self._temporal_stride, self._crop_size,
            image_key=self._image_key, label_key=self._label_key, num_crops=self._num_crops),
        examples,
        fn_output_signature={'clips': clip_spec, VIDEO_ID: tf.TensorSpec([], tf.string),
                             LABEL: tf.TensorSpec([], tf.int64)})
    flat = tf.reshape(sampled['clips'], [-1, self._num_frames, self._crop_size, self._crop_size, 3])
    outputs = self._average_clips(self._embed(flat), tf.shape(examples)[0])
    outputs[VIDEO_ID] = sampled[VIDEO_ID]
    outputs[LABEL] = sampled[LABEL]
    return outputs

  def get_inference_signatures(self, function_keys: Optional[Dict[str, str]] = None) -> Dict[str, Any]:
    """Concrete functions to save as signatures.

    Args:
      function_keys: {method name: signature key} for any of 'serve', 'serve_video_clips', 'serve_examples';
        None exports all three under `SIGNATURE_CLIPS`, `SIGNATURE_VIDEO_CLIPS` and `SIGNATURE_EXAMPLES`.

    Returns:
      {signature key: concrete function}.

    Raises:
      ValueError: on an unknown method name.
    """
    specs = {
        'serve': (self.serve, tf.TensorSpec(_CLIPS_SHAPE, tf.uint8, name=INPUT_CLIPS)),
        'serve_video_clips': (self.serve_video_clips, tf.TensorSpec(_VIDEO_CLIPS_SHAPE, tf.uint8, name=INPUT_CLIPS)),
        'serve_examples': (self.serve_examples, tf.TensorSpec([None], tf.string, name=INPUT_EXAMPLES)),
    }
    if function_keys is None:
      function_keys = DEFAULT_FUNCTION_KEYS
    signatures = {}
    for method, key in function_keys.items():
      if method not in specs:
        raise ValueError(f'Unknown serving function {method!r}; expected one of {sorted(specs)}.')
      function, spec = specs[method]
      signatures[key] = function.get_concrete_function(spec)
    return signatures


DEFAULT_FUNCTION_KEYS = {
    'serve': SIGNATURE_CLIPS,
    'serve_video_clips': SIGNATURE_VIDEO_CLIPS,
    'serve_examples': SIGNATURE_EXAMPLES,
}
