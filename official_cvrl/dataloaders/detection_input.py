"""Input pipeline of spatio-temporal action detection (AVA and the synthetic detection data).

One record is one keyframe (see `detection_keys`): the JPEG frames around it, the ground-truth person boxes with
their actions, and person proposals with detector scores.

Stages:
  1. `Decoder.decode`: record -> raw tensors (encoded frames, box coordinate lists, label pairs, proposals);
  2. `Parser` (one example):
     - `_decode_clip`: `num_frames` frames at `temporal_stride` centred on the keyframe (indices clamped to the
       stored frames); `_resize` brings them to `[height, width]`. Boxes are normalised, so resizing the whole
       frame leaves them unchanged;
     - training, `_random_crop`: a window whose sides are a random fraction (`crop_scale_range`) of the frame's,
       at a random place, cut from every frame before resizing (scale jitter: SlowFast's short side 256-320 with
       a fixed crop is the range (0.8, 1.0)); the boxes move into the window's coordinates, clipped to it, and a
       box with less than `min_visible_box_fraction` of its area inside is dropped;
     - training, `_train_boxes`: the ground-truth boxes, each coordinate jittered by up to `box_jitter` times the
       box's height / width (as SlowFast's AVA training), the clip and its boxes flipped together with
       `flip_probability`; the multi-hot actions of each box are the targets;
     - evaluation, `_eval_boxes`: the proposals whose score is >= `proposal_score_threshold` (at most `max_num_boxes`,
       the highest-scoring) are scored; the ground truth is passed through for the evaluator, with the keyframe
       key `"<video id>,<timestamp>"`.
     Every box tensor is padded to `max_num_boxes` rows with a 0/1 mask.
Frames stay uint8; the task scales them to [0, 1].

Output of `Parser.parse_fn(is_training)`: `(features, labels)` with
  features: 'image' uint8 `[T, H, W, 3]`, 'boxes' float32 `[max_num_boxes, 4]` (`[ymin, xmin, ymax, xmax]`,
    normalised), 'box_mask' float32 `[max_num_boxes]`;
  labels (training): 'classes' float32 `[max_num_boxes, num_classes]` multi-hot of the boxes in features;
  labels (evaluation): 'gt_boxes' `[max_num_boxes, 4]`, 'gt_classes' `[max_num_boxes, num_classes]`, 'gt_mask'
    `[max_num_boxes]`, 'keyframe_key' string `[]`.
"""
from typing import Dict, Tuple

import tensorflow as tf

from official.vision.dataloaders import decoder
from official.vision.dataloaders import parser
from official_cvrl.dataloaders import detection_keys
from official_cvrl.dataloaders import feature_keys


class Decoder(decoder.Decoder):
  """Parses a detection SequenceExample into raw tensors keyed by feature key."""

  def __init__(self, image_key: str = feature_keys.IMAGE_KEY):
    self._image_key = image_key
    context = {
        feature_keys.VIDEO_ID_KEY: tf.io.FixedLenFeature((), tf.string, default_value=''),
        detection_keys.KEYFRAME_INDEX_KEY: tf.io.FixedLenFeature((), tf.int64),
        detection_keys.KEYFRAME_TIMESTAMP_KEY: tf.io.FixedLenFeature((), tf.int64, default_value=-1),
        detection_keys.LABEL_BOX_INDEX_KEY: tf.io.VarLenFeature(tf.int64),
        detection_keys.LABEL_CLASS_INDEX_KEY: tf.io.VarLenFeature(tf.int64),
        detection_keys.PROPOSAL_SCORE_KEY: tf.io.VarLenFeature(tf.float32),
    }
    for key in detection_keys.BOX_KEYS + detection_keys.PROPOSAL_KEYS:
      context[key] = tf.io.VarLenFeature(tf.float32)
    self._context_features = context
    self._sequence_features = {image_key: tf.io.FixedLenSequenceFeature((), tf.string)}

  def decode(self, serialized_example: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Parses one serialized SequenceExample.

    Returns:
      A dict: `image_key` string `[num_frames]`; the box coordinate lists float32 `[N]` / proposals `[P]`; the label
      pairs int64 `[L]`; the keyframe index and timestamp int64 `[]`; the video id string `[]`.
    """
    context, sequence = tf.io.parse_single_sequence_example(
        serialized_example, context_features=self._context_features, sequence_features=self._sequence_features)
    decoded = {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v for k, v in context.items()}
    decoded.update(sequence)
    return decoded


def _stack_boxes(decoded: Dict[str, tf.Tensor], keys) -> tf.Tensor:
  return tf.stack([decoded[k] for k in keys], axis=-1)


def pad_rows(values: tf.Tensor, num_rows: int) -> tf.Tensor:
  """The first `num_rows` rows of `values` `[N, ...]`, zero-padded to exactly `num_rows`."""
  values = values[:num_rows]
  padding = [[0, num_rows - tf.shape(values)[0]]] + [[0, 0]] * (len(values.shape) - 1)
  return tf.ensure_shape(tf.pad(values, padding), [num_rows] + values.shape[1:].as_list())


def jitter_boxes(boxes: tf.Tensor, max_jitter: float) -> tf.Tensor:
  """Moves each coordinate by up to `max_jitter` times the box height (y) / width (x), clipped to [0, 1].

  Args:
    boxes: float32 `[N, 4]` normalised `[ymin, xmin, ymax, xmax]`.
    max_jitter: the largest shift as a fraction of the box size.

  Returns:
    float32 `[N, 4]` boxes with ymin <= ymax and xmin <= xmax.
  """
  size = tf.tile(boxes[:, 2:] - boxes[:, :2], [1, 2])
  shift = tf.random.uniform(tf.shape(boxes), -max_jitter, max_jitter) * size
  moved = tf.clip_by_value(boxes + shift, 0.0, 1.0)
  low = tf.minimum(moved[:, :2], moved[:, 2:])
  high = tf.maximum(moved[:, :2], moved[:, 2:])
  return tf.concat([low, high], axis=-1)


def random_crop_window(height: tf.Tensor, width: tf.Tensor, scale_range: Tuple[float, float]) -> tf.Tensor:
  """int32 `[4]` `(top, left, crop height, crop width)`: sides `f` times the frame's, f ~ U(scale_range)."""
  scale = tf.random.uniform([], scale_range[0], scale_range[1])
  size = tf.stack([height, width])
  crop = tf.maximum(1, tf.cast(tf.round(scale * tf.cast(size, tf.float32)), tf.int32))
  crop = tf.minimum(crop, size)
  corner = tf.cast(tf.floor(tf.random.uniform([2]) * tf.cast(size - crop + 1, tf.float32)), tf.int32)
  return tf.concat([tf.minimum(corner, size - crop), crop], axis=0)


def crop_boxes(boxes: tf.Tensor, window: tf.Tensor, height: tf.Tensor, width: tf.Tensor
               ) -> Tuple[tf.Tensor, tf.Tensor]:
  """Boxes in the coordinates of a crop window, clipped to it, and the fraction of each box inside it.

  Args:
    boxes: float32 `[N, 4]` normalised `[ymin, xmin, ymax, xmax]` in the whole frame.
    window: int32 `[4]` `(top, left, crop height, crop width)` in pixels of the `height` x `width` frame.
    height: frame height in pixels.
    width: frame width in pixels.

  Returns:
    float32 `[N, 4]` boxes normalised to the window, and float32 `[N]` visible area fractions (0 for an empty
    box).
  """
  size = tf.cast(tf.stack([height, width]), tf.float32)
  window = tf.cast(window, tf.float32)
  offset = tf.tile(window[:2] / size, [2])
  extent = tf.tile(window[2:] / size, [2])
  moved = (boxes - offset) / extent
  clipped = tf.clip_by_value(moved, 0.0, 1.0)
  area = lambda b: tf.reduce_prod(tf.maximum(b[:, 2:] - b[:, :2], 0.0), axis=-1)
  return clipped, tf.math.divide_no_nan(area(clipped), area(moved))


def flip_boxes(boxes: tf.Tensor) -> tf.Tensor:
  """Mirrors normalised `[N, 4]` boxes left-right."""
  ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
  return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


class Parser(parser.Parser):
  """Turns a decoded keyframe record into a clip, boxes to classify and their targets."""

  def __init__(self,
               num_frames: int,
               temporal_stride: int,
               image_size: Tuple[int, int],
               num_classes: int,
               max_num_boxes: int,
               box_jitter: float = 0.05,
               flip_probability: float = 0.5,
               proposal_score_threshold: float = 0.8,
               image_key: str = feature_keys.IMAGE_KEY,
               crop_scale_range: Tuple[float, float] = (1.0, 1.0),
               min_visible_box_fraction: float = 0.25):
    """Initialises the parser.

    Args:
      num_frames: frames per clip.
      temporal_stride: stride between the clip's frames.
      image_size: (height, width) of the output frames.
      num_classes: class indices must lie in [0, num_classes).
      max_num_boxes: rows of every box tensor. Training keeps the first `max_num_boxes` ground-truth boxes;
        evaluation fails on a keyframe with more ground-truth boxes (the mAP would be wrong) and keeps the
        highest-scoring proposals.
      box_jitter: training jitter of the ground-truth boxes, a fraction of the box size.
      flip_probability: probability of a left-right flip of a training clip and its boxes.
      proposal_score_threshold: evaluation scores proposals whose detector score is at least this.
      image_key: decoded feature holding the encoded frames.
      crop_scale_range: training crop side as a fraction of the frame side, `(low, high)` in (0, 1];
        (1, 1) keeps whole frames.
      min_visible_box_fraction: a training box with less of its area inside the crop is dropped.
    """
    if num_frames < 1 or temporal_stride < 1 or max_num_boxes < 1 or num_classes < 1:
      raise ValueError('num_frames, temporal_stride, max_num_boxes and num_classes must be >= 1, got '
                       f'{num_frames}, {temporal_stride}, {max_num_boxes}, {num_classes}.')
    if box_jitter < 0 or not 0.0 <= flip_probability <= 1.0:
      raise ValueError(f'box_jitter must be >= 0 and flip_probability in [0, 1], got {box_jitter}, '
                       f'{flip_probability}.')
    if not 0.0 < crop_scale_range[0] <= crop_scale_range[1] <= 1.0 or not 0.0 <= min_visible_box_fraction <= 1.0:
      raise ValueError('crop_scale_range must satisfy 0 < low <= high <= 1 and min_visible_box_fraction lie in '
                       f'[0, 1], got {crop_scale_range}, {min_visible_box_fraction}.')
    self._crop_scale_range = tuple(float(f) for f in crop_scale_range)
    self._min_visible = min_visible_box_fraction
    self._num_frames = num_frames
    self._stride = temporal_stride
    self._image_size = tuple(int(s) for s in image_size)
    self._num_classes = num_classes
    self._max_num_boxes = max_num_boxes
    self._box_jitter = box_jitter
    self._flip_probability = flip_probability
    self._score_threshold = proposal_score_threshold
    self._image_key = image_key

  def _decode_clip(self, decoded: Dict[str, tf.Tensor]) -> tf.Tensor:
    """uint8 `[T, H, W, 3]`: frames centred on the keyframe, clamped to the stored ones, at stored size."""
    encoded = decoded[self._image_key]
    keyframe = tf.cast(decoded[detection_keys.KEYFRAME_INDEX_KEY], tf.int32)
    offsets = (tf.range(self._num_frames) - self._num_frames // 2) * self._stride
    indices = tf.clip_by_value(keyframe + offsets, 0, tf.shape(encoded)[0] - 1)
    return tf.map_fn(lambda x: tf.io.decode_jpeg(x, channels=3), tf.gather(encoded, indices),
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

  def _random_crop(self, frames: tf.Tensor, boxes: tf.Tensor, classes: tf.Tensor
                   ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """One crop window for the whole clip; boxes moved into it, mostly hidden ones dropped with their actions."""
    if self._crop_scale_range == (1.0, 1.0):
      return frames, boxes, classes
    height, width = tf.shape(frames)[1], tf.shape(frames)[2]
    window = random_crop_window(height, width, self._crop_scale_range)
    frames = frames[:, window[0]:window[0] + window[2], window[1]:window[1] + window[3]]
    boxes, visible = crop_boxes(boxes, window, height, width)
    keep = visible >= tf.maximum(self._min_visible, 1e-6)
    return frames, tf.boolean_mask(boxes, keep), tf.boolean_mask(classes, keep)

  def _resize(self, frames: tf.Tensor) -> tf.Tensor:
    """uint8 frames resized to `image_size` (boxes are normalised, so they follow)."""
    frames = tf.image.resize(frames, self._image_size, antialias=True)
    return tf.cast(tf.clip_by_value(tf.round(frames), 0.0, 255.0), tf.uint8)

  def _groundtruth(self, decoded: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
    """float32 `[N, 4]` ground-truth boxes and their multi-hot actions `[N, num_classes]`."""
    boxes = _stack_boxes(decoded, detection_keys.BOX_KEYS)
    box_index = decoded[detection_keys.LABEL_BOX_INDEX_KEY]
    class_index = decoded[detection_keys.LABEL_CLASS_INDEX_KEY]
    num_boxes = tf.shape(boxes, out_type=tf.int64)[0]
    checks = [
        tf.debugging.assert_equal(tf.shape(box_index), tf.shape(class_index), message=(
            f'{detection_keys.LABEL_BOX_INDEX_KEY} and {detection_keys.LABEL_CLASS_INDEX_KEY} differ in length')),
        tf.debugging.assert_less(tf.concat([box_index, [-1]], 0), num_boxes, message=(
            f'{detection_keys.LABEL_BOX_INDEX_KEY} points past the boxes of a record')),
        tf.debugging.assert_less(tf.concat([class_index, [-1]], 0), tf.constant(self._num_classes, tf.int64),
                                 message=f'a class index is >= num_classes={self._num_classes}: check '
                                         'task.*_data.num_classes against the label map of the records'),
        tf.debugging.assert_non_negative(tf.concat([class_index, box_index], 0),
                                         message='negative box or class index in a record'),
    ]
    with tf.control_dependencies(checks):
      pairs = tf.stack([box_index, class_index], axis=-1)
    multi_hot = tf.scatter_nd(pairs, tf.ones_like(box_index, tf.float32), tf.stack([num_boxes, self._num_classes]))
    return boxes, tf.minimum(multi_hot, 1.0)

  def _train_boxes(self, image: tf.Tensor, boxes: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
    if self._box_jitter > 0:
      boxes = jitter_boxes(boxes, self._box_jitter)
    if self._flip_probability > 0:
      flip = tf.random.uniform([]) < self._flip_probability
      image = tf.cond(flip, lambda: tf.reverse(image, axis=[2]), lambda: image)
      boxes = tf.cond(flip, lambda: flip_boxes(boxes), lambda: boxes)
    return image, boxes

  def _eval_boxes(self, decoded: Dict[str, tf.Tensor]) -> tf.Tensor:
    """The proposals above the score threshold, highest score first, at most `max_num_boxes`."""
    proposals = _stack_boxes(decoded, detection_keys.PROPOSAL_KEYS)
    scores = decoded[detection_keys.PROPOSAL_SCORE_KEY]
    keep = scores >= self._score_threshold
    proposals, scores = tf.boolean_mask(proposals, keep), tf.boolean_mask(scores, keep)
    order = tf.argsort(scores, direction='DESCENDING', stable=True)
    return tf.gather(proposals, order)

  def _mask(self, num_rows: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.range(self._max_num_boxes) < num_rows, tf.float32)

  def _parse_train_data(self, decoded: Dict[str, tf.Tensor]):
    boxes, classes = self._groundtruth(decoded)
    frames, boxes, classes = self._random_crop(self._decode_clip(decoded), boxes, classes)
    image, boxes = self._train_boxes(self._resize(frames), boxes)
    features = {'image': image, 'boxes': pad_rows(boxes, self._max_num_boxes),
                'box_mask': self._mask(tf.shape(boxes)[0])}
    return features, {'classes': pad_rows(classes, self._max_num_boxes)}

  def _parse_eval_data(self, decoded: Dict[str, tf.Tensor]):
    image = self._resize(self._decode_clip(decoded))
    gt_boxes, gt_classes = self._groundtruth(decoded)
    video_id = decoded[feature_keys.VIDEO_ID_KEY]
    timestamp = decoded[detection_keys.KEYFRAME_TIMESTAMP_KEY]
    key = tf.strings.join([video_id, tf.strings.as_string(timestamp, width=4, fill='0')], separator=',')
    check = tf.debugging.assert_less_equal(
        tf.shape(gt_boxes)[0], self._max_num_boxes,
        message=f'a keyframe has more ground-truth boxes than max_num_boxes={self._max_num_boxes}; raise '
                'task.validation_data.max_num_boxes (data_tools.ava reports the largest count)')
    with tf.control_dependencies([check]):
      proposals = self._eval_boxes(decoded)
    features = {'image': image, 'boxes': pad_rows(proposals, self._max_num_boxes),
                'box_mask': self._mask(tf.shape(proposals)[0])}
    labels = {'gt_boxes': pad_rows(gt_boxes, self._max_num_boxes),
              'gt_classes': pad_rows(gt_classes, self._max_num_boxes),
              'gt_mask': self._mask(tf.shape(gt_boxes)[0]),
              'keyframe_key': key}
    return features, labels
