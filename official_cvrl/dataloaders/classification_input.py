"""Input pipeline of the classification protocols (linear evaluation, fine-tuning, supervised; paper Sec. 4.1).

Training (one clip per video, the paper's "standard data augmentations of cropping, resizing, and flipping"):
  1. `_sample_train_clip`: a clip of `num_frames` frames at `temporal_stride` from a uniformly random start;
  2. `_augment_train_clip`: one random crop window for the whole clip (area / aspect-ratio ranges), decoded and
     resized (`ops.video_augment`), then one flip decision for the whole clip.
Evaluation (multi-view testing, `ops.multi_view`):
  1. `_sample_eval_clips`: `num_test_clips` clips evenly spaced over the video, every distinct frame decoded once;
  2. `_crop_eval_views`: `num_test_crops` squares of the frame's short side (the centre one, or both ends and the
     centre of the long side), each resized to `crop_size`.
Frames stay uint8 until the task scales them to [0, 1] on the accelerator, like pretraining.

`PostBatchProcessor` folds the views into the batch: `[batch, views, T, S, S, 3]` -> `[batch * views, ...]`, the
views of one video consecutive, so the task can average their predictions back per video.
"""
from typing import Dict, Tuple

import tensorflow as tf

from official.vision.dataloaders import parser
from official_cvrl.dataloaders import feature_keys
from official_cvrl.ops import multi_view
from official_cvrl.ops import temporal_sampling
from official_cvrl.ops import video_augment

# Independent random streams of a training example: start frame, crop window, flip.
_NUM_SEEDS = 3


class Parser(parser.Parser):
  """Turns a decoded video (see `video_decoder.Decoder`) into uint8 clips and an int32 class index."""

  def __init__(self,
               num_frames: int,
               temporal_stride: int,
               crop_size: int,
               num_classes: int,
               crop_area_range: Tuple[float, float] = (0.49, 1.0),
               crop_aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
               flip_probability: float = 0.5,
               num_test_clips: int = 1,
               num_test_crops: int = 1,
               image_key: str = feature_keys.IMAGE_KEY,
               label_key: str = feature_keys.LABEL_INDEX_KEY):
    """Initialises the parser.

    Args:
      num_frames: frames per clip.
      temporal_stride: stride between the frames of a clip.
      crop_size: side of the square output frames.
      num_classes: labels must lie in [0, num_classes); anything else fails the input pipeline with the video id.
      crop_area_range: training crop area as a fraction of the frame.
      crop_aspect_ratio_range: training crop width / height.
      flip_probability: probability of a horizontal flip of a training clip.
      num_test_clips: evaluation clips per video, evenly spaced.
      num_test_crops: evaluation crops per clip: 1 (centre) or 3 (both ends and centre of the long side).
      image_key: decoded feature holding the encoded frames.
      label_key: decoded feature holding the class indices.

    Raises:
      ValueError: on out-of-range settings.
    """
    if num_frames < 1 or temporal_stride < 1 or crop_size < 1:
      raise ValueError('num_frames, temporal_stride and crop_size must be >= 1, got '
                       f'{num_frames}, {temporal_stride}, {crop_size}.')
    if num_classes < 1:
      raise ValueError(f'num_classes must be >= 1, got {num_classes}.')
    if not 0.0 <= flip_probability <= 1.0:
      raise ValueError(f'flip_probability must be in [0, 1], got {flip_probability}.')
    if num_test_clips < 1 or num_test_crops not in (1, 3):
      raise ValueError(f'num_test_clips must be >= 1 and num_test_crops 1 or 3, got {num_test_clips} and '
                       f'{num_test_crops}.')
    self._num_frames = num_frames
    self._stride = temporal_stride
    self._crop_size = crop_size
    self._num_classes = num_classes
    self._crop_area_range = tuple(crop_area_range)
    self._crop_aspect_ratio_range = tuple(crop_aspect_ratio_range)
    self._flip_probability = flip_probability
    self._num_test_clips = num_test_clips
    self._num_test_crops = num_test_crops
    self._image_key = image_key
    self._label_key = label_key

  @property
  def clip_span(self) -> int:
    """Source frames covered by one clip."""
    return (self._num_frames - 1) * self._stride + 1

  @property
  def num_test_views(self) -> int:
    """Views per video produced by `parse_fn(False)`."""
    return self._num_test_clips * self._num_test_crops

  def _label(self, decoded_tensors: Dict[str, tf.Tensor], video_id: tf.Tensor) -> tf.Tensor:
    """The first class index as int32, checked against [0, num_classes)."""
    labels = tf.reshape(tf.cast(decoded_tensors[self._label_key], tf.int32), [-1])
    # Appending the unlabeled marker makes "first entry" well defined for videos without a label.
    label = tf.concat([labels, [feature_keys.UNLABELED_INDEX]], axis=0)[0]
    check = tf.debugging.Assert(
        tf.logical_and(label >= 0, label < self._num_classes),
        [f'A video has a class index outside [0, {self._num_classes}) (-1 = no label; "{self._label_key}"). Check '
         'num_classes of the data config and the label map used by data_tools.convert. Video id:', video_id,
         'label:', label])
    with tf.control_dependencies([check]):
      return tf.identity(label)

  def _sample_train_clip(self, encoded: tf.Tensor, video_id: tf.Tensor, seed: tf.Tensor) -> tf.Tensor:
    """The encoded frames (string `[T]`) of one clip at a uniformly random start."""
    num_video_frames = tf.shape(encoded)[0]
    max_start = tf.maximum(num_video_frames - self.clip_span, 0)
    start = tf.random.stateless_uniform([], seed, minval=0, maxval=max_start + 1, dtype=tf.int32)
    indices = temporal_sampling.clip_frame_indices(start, self._num_frames, self._stride, num_video_frames,
                                                   video_id=video_id)
    return tf.gather(encoded, indices)

  def _augment_train_clip(self, frames: tf.Tensor, seeds) -> tf.Tensor:
    """Random crop (one window per clip) -> resize -> flip (one decision per clip): uint8 `[T, S, S, 3]`."""
    window = video_augment.sample_crop_window(
        tf.io.extract_jpeg_shape(frames[0])[:2], area_range=self._crop_area_range,
        aspect_ratio_range=self._crop_aspect_ratio_range, seed=seeds[0])
    clip = video_augment.decode_crop_resize(frames, window, self._crop_size)
    flip = tf.random.stateless_uniform([], seeds[1]) < self._flip_probability
    return video_augment.flip_left_right_clip(clip, flip)

  def _sample_eval_clips(self, encoded: tf.Tensor, video_id: tf.Tensor) -> tf.Tensor:
    """Decoded evenly spaced clips: uint8 `[num_test_clips, T, H, W, 3]` at the stored resolution."""
    indices = multi_view.clips_frame_indices(tf.shape(encoded)[0], self._num_frames, self._stride,
                                             self._num_test_clips, video_id=video_id)
    return multi_view.decode_frames_once(encoded, indices)

  def _crop_eval_views(self, clips: tf.Tensor) -> tf.Tensor:
    """Crops of the short side's square resized to `crop_size`: uint8 `[clips * crops, T, S, S, 3]`."""
    return multi_view.crop_test_views(clips, self._crop_size, self._num_test_crops)

  def _parse_train_data(self, decoded_tensors: Dict[str, tf.Tensor]
                        ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Parses one training example.

    Args:
      decoded_tensors: output of `video_decoder.Decoder.decode`.

    Returns:
      features {'image': uint8 `[T, S, S, 3]`} and labels {'label': int32 scalar}.
    """
    encoded = decoded_tensors[self._image_key]
    video_id = decoded_tensors.get(feature_keys.VIDEO_ID_KEY, tf.constant(''))
    seeds = tf.unstack(tf.random.experimental.stateless_split(temporal_sampling.stateless_seed(None), _NUM_SEEDS))
    frames = self._sample_train_clip(encoded, video_id, seeds[0])
    image = self._augment_train_clip(frames, seeds[1:])
    image = tf.ensure_shape(image, [self._num_frames, self._crop_size, self._crop_size, 3])
    return {'image': image}, {'label': self._label(decoded_tensors, video_id)}

  def _parse_eval_data(self, decoded_tensors: Dict[str, tf.Tensor]
                       ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Parses one evaluation example (deterministic: no random draw).

    Args:
      decoded_tensors: output of `video_decoder.Decoder.decode`.

    Returns:
      features {'image': uint8 `[num_test_clips * num_test_crops, T, S, S, 3]`, clip-major} and labels
      {'label': int32 scalar}.
    """
    encoded = decoded_tensors[self._image_key]
    video_id = decoded_tensors.get(feature_keys.VIDEO_ID_KEY, tf.constant(''))
    image = self._crop_eval_views(self._sample_eval_clips(encoded, video_id))
    image = tf.ensure_shape(image, [self.num_test_views, self._num_frames, self._crop_size, self._crop_size, 3])
    return {'image': image}, {'label': self._label(decoded_tensors, video_id)}


class PostBatchProcessor:
  """Folds evaluation views into the batch: `[batch, views, T, S, S, 3]` -> `[batch * views, T, S, S, 3]`.

  The views of one video stay consecutive (rows `i * views` to `(i + 1) * views - 1`), which is what
  `multi_view.average_views` expects. Training batches `[batch, T, S, S, 3]` pass unchanged; labels stay `[batch]`.
  """

  def __call__(self, features: Dict[str, tf.Tensor], labels: Dict[str, tf.Tensor]
               ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    image = features['image']
    if image.shape.rank == 6:
      features = dict(features)
      view_shape = image.shape[2:]
      new_shape = ([-1] + view_shape.as_list() if view_shape.is_fully_defined()
                   else tf.concat([[-1], tf.shape(image)[2:]], axis=0))
      features['image'] = tf.reshape(image, new_shape)
    return features, labels
