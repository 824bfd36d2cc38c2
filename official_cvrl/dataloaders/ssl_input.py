"""Input pipeline of CVRL self-supervised pretraining: one video -> two (or rho) augmented clips (Sec. 3.3, Fig. 2).

Stages, each a small named function:
  1. `_sample_pair`: the temporal interval sampler picks the two clip starts and their frame indices
     (`ops.temporal_sampling`), and the encoded JPEG frames of both clips are gathered.
  2. `_sample_windows` / `_sample_flips`: the spatial parameters, drawn once per clip (temporally consistent,
     Algorithm 1) or once per frame (the "no TC" ablation of Table 9).
  3. `_decode_pair`: decode only the crop windows (each frame once, even where the clips overlap), resize
     (`ops.video_augment`) and flip. With a `canvas_size` the CPU stops after the decode: each clip's window is
     padded to the fixed canvas when batched (`Parser.canvas_batch_fn`) and the train step resizes and flips it
     on the accelerator (`ops.window_resize.resize_windows`), which delivers the same clips.
Colour jitter, greyscale and blur are not done here: they run batched on the accelerator in the train step
(`ops.color_augment`), so the CPU emits uint8 frames, a quarter of the float32 bytes to transfer.

`PostBatchProcessor` then folds the pair axis into the batch: all first views, then all second views.
"""
from typing import Dict, Optional, Tuple

import tensorflow as tf

from official.vision.dataloaders import parser
from official_cvrl.dataloaders import feature_keys
from official_cvrl.ops import temporal_sampling
from official_cvrl.ops import video_augment
from official_cvrl.ops import window_resize

# Number of independent random streams one example needs: interval sampling, two windows, two flips.
_NUM_SEEDS = 5


def _clip_key(index: int) -> str:
  """Feature key of clip `index` before batching, with a canvas (the clips of a video differ in size)."""
  return f'clip_{index}'


class Parser(parser.Parser):
  """Turns a decoded video (see `video_decoder.Decoder`) into a pair of uint8 clips and a label.

  Training draws fresh random numbers for every example. Evaluation (`parse_fn(False)`, used for the pretraining
  task's validation loss) applies the same sampling and augmentation, but seeds every random draw with a hash of
  the video (its id and first frame bytes), so each video gives the same pair at every evaluation and the
  validation loss is comparable across checkpoints and with the training loss.
  """

  def __init__(self,
               num_frames: int = 16,
               temporal_stride: int = 2,
               crop_size: int = 224,
               temporal_augmentation: bool = True,
               interval_distribution: str = 'decreasing',
               interval_power: float = 1.0,
               spatial_augmentation: bool = True,
               temporally_consistent: bool = True,
               crop_area_range: Tuple[float, float] = (0.3, 1.0),
               crop_aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
               flip_probability: float = 0.5,
               image_key: str = feature_keys.IMAGE_KEY,
               label_key: str = feature_keys.LABEL_INDEX_KEY,
               num_clips: int = 2,
               canvas_size: Optional[Tuple[int, int]] = None):
    """Initialises the parser.

    Args:
      num_frames: frames per clip (16 in pretraining).
      temporal_stride: stride between the frames of a clip (2 in the paper).
      crop_size: side of the square output frames.
      temporal_augmentation: sample the interval between the clips from P(t); False starts both clips at the
        same frame ("SA only" ablation).
      interval_distribution: 'decreasing', 'uniform' or 'increasing' (Fig. 3).
      interval_power: exponent p of P(t).
      spatial_augmentation: random crop + flip; False takes the central square crop (side = short side) of every
        frame without flipping.
      temporally_consistent: one crop window and flip per clip (Algorithm 1); False draws them per frame.
      crop_area_range: range of the crop area as a fraction of the frame.
      crop_aspect_ratio_range: range of the crop width / height.
      flip_probability: probability of a horizontal flip.
      image_key: decoded feature holding the encoded frames.
      label_key: decoded feature holding the class indices.
      num_clips: clips per video, rho >= 2 (2 = the paper's pair). With rho > 2 the starts come from
        `temporal_sampling.sample_clip_start_indices` (consecutive gaps follow P(t) as closely as the video
        allows), each clip gets its own crop and flip, and every frame used by several clips is decoded once
        (`video_augment.decode_crop_resize_clips`).
      canvas_size: None resizes and flips on the CPU, the features are {'image': uint8 `[rho, T, S, S, 3]`}.
        (height, width) leaves both to the train step: the features are each clip's window (see `_on_canvas`),
        batched onto the canvas by `canvas_batch_fn`, then {'image': uint8 `[rho * batch, T, height, width, 3]`,
        'window_size', 'flip'} after `PostBatchProcessor`, for `window_resize.resize_windows`. Needs
        temporally consistent windows (one per clip) and a canvas of at least S x S.
    """
    if num_clips < 2:
      raise ValueError(f'num_clips must be >= 2 (two or more clips per video), got {num_clips}.')
    if num_frames < 1 or temporal_stride < 1 or crop_size < 1:
      raise ValueError('num_frames, temporal_stride and crop_size must be >= 1, got '
                       f'{num_frames}, {temporal_stride}, {crop_size}.')
    if not 0.0 <= flip_probability <= 1.0:
      raise ValueError(f'flip_probability must be in [0, 1], got {flip_probability}.')
    # Fail at construction, not inside tf.data, on a bad distribution name or power.
    temporal_sampling.interval_weights(0, interval_distribution, interval_power)
    self._num_frames = num_frames
    self._stride = temporal_stride
    self._crop_size = crop_size
    self._temporal_augmentation = temporal_augmentation
    self._interval_distribution = interval_distribution
    self._interval_power = interval_power
    self._spatial_augmentation = spatial_augmentation
    self._temporally_consistent = temporally_consistent
    self._crop_area_range = tuple(crop_area_range)
    self._crop_aspect_ratio_range = tuple(crop_aspect_ratio_range)
    self._flip_probability = flip_probability
    self._image_key = image_key
    self._label_key = label_key
    self._num_clips = num_clips
    if canvas_size is not None:
      canvas_size = tuple(int(side) for side in canvas_size)
      if len(canvas_size) != 2 or min(canvas_size) < crop_size:
        raise ValueError(f'canvas_size must be (height, width), each >= crop_size {crop_size}, got {canvas_size}.')
      if spatial_augmentation and not temporally_consistent:
        raise ValueError('canvas_size (resize on the accelerator) needs temporally consistent windows, one per clip; '
                         'the per-frame windows of temporally_consistent=False are resized on the CPU.')
    self._canvas_size = canvas_size

  @property
  def clip_span(self) -> int:
    """Source frames covered by one clip."""
    return (self._num_frames - 1) * self._stride + 1

  def _sample_pair(self, encoded: tf.Tensor, video_id: tf.Tensor, seed: tf.Tensor
                   ) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Samples the two clips in time.

    Returns:
      The encoded frames of both clips (string `[T]` each) and how many frames they share.
    """
    num_video_frames = tf.shape(encoded)[0]
    starts = temporal_sampling.sample_pair_start_indices(
        num_video_frames, self.clip_span, self._interval_distribution, self._interval_power,
        temporal_augmentation=self._temporal_augmentation, seed=seed)
    clips = [
        tf.gather(encoded, temporal_sampling.clip_frame_indices(
            start, self._num_frames, self._stride, num_video_frames, video_id=video_id))
        for start in tf.unstack(starts)
    ]
    num_shared = temporal_sampling.shared_frame_count(starts[1] - starts[0], self._num_frames, self._stride)
    return clips[0], clips[1], num_shared

  def _sample_windows(self, image_shape_hw: tf.Tensor, seeds) -> Tuple[tf.Tensor, tf.Tensor]:
    """Crop windows of both clips: `[4]` each (consistent) or `[T, 4]` each (per frame)."""
    if not self._spatial_augmentation:
      window = video_augment.central_crop_window(image_shape_hw)
      return window, window
    kwargs = dict(area_range=self._crop_area_range, aspect_ratio_range=self._crop_aspect_ratio_range)
    if self._temporally_consistent:
      return tuple(video_augment.sample_crop_window(image_shape_hw, seed=seed, **kwargs) for seed in seeds)
    return tuple(video_augment.sample_crop_windows(image_shape_hw, self._num_frames, seed=seed, **kwargs)
                 for seed in seeds)

  def _sample_flips(self, seeds):
    """Flip flags of both clips: bool scalar each (consistent) or bool `[T]` each (per frame)."""
    shape = [] if self._temporally_consistent else [self._num_frames]
    return tuple(tf.random.stateless_uniform(shape, seed) < self._flip_probability for seed in seeds)

  def _decode_pair(self, clips, num_shared: tf.Tensor, seeds: tf.Tensor) -> Dict[str, tf.Tensor]:
    """Decodes, crops, resizes and flips both clips (resize and flip left to the train step with a canvas).

    Returns:
      {'image': uint8 `[2, T, crop_size, crop_size, 3]`}, or with a canvas the features of `_on_canvas`.
    """
    image_shape_hw = tf.io.extract_jpeg_shape(clips[0][0])[:2]
    windows = self._sample_windows(image_shape_hw, (seeds[1], seeds[2]))
    if self._canvas_size is not None:
      crops = video_augment.decode_crop_pair(clips[0], clips[1], num_shared, windows[0], windows[1])
      return self._on_canvas(crops, self._sample_flips((seeds[3], seeds[4])))
    frames = video_augment.decode_crop_resize_pair(
        clips[0], clips[1], num_shared, windows[0], windows[1], self._crop_size)
    if self._spatial_augmentation:
      flips = self._sample_flips((seeds[3], seeds[4]))
      frames = [video_augment.flip_left_right_clip(clip, flip) for clip, flip in zip(frames, flips)]
    return {'image': tf.stack(frames)}

  def _on_canvas(self, crops, flips) -> Dict[str, tf.Tensor]:
    """Each clip's window as it goes on the canvas, its size and its flip flag (False without spatial augmentation).

    Returns:
      {'clip_0': uint8 `[T, h_0, w_0, 3]`, ..., 'window_size': int32 `[rho, 2]`, 'flip': bool `[rho]`}; the clips
      differ in size, so they stay separate until `canvas_batch_fn` pads them to the canvas.
    """
    fitted = [tf.ensure_shape(window_resize.fit_to_canvas(crop, self._canvas_size, self._crop_size),
                              [self._num_frames, None, None, 3]) for crop in crops]
    if not self._spatial_augmentation:
      flips = [tf.constant(False)] * len(crops)
    features = {_clip_key(index): clip for index, clip in enumerate(fitted)}
    features['window_size'] = tf.stack([tf.shape(clip)[1:3] for clip in fitted])
    features['flip'] = tf.stack(flips)
    return features

  def canvas_batch_fn(self, global_batch_size: int, drop_remainder: bool = True):
    """Model Garden `InputReader`'s `transform_and_batch_fn` for a canvas: batches, padding every clip to it.

    `padded_batch` writes each clip into the batch once, zero-padded bottom and right; padding in the parser
    would copy every canvas one more time. None without a canvas (the reader's plain batching).

    Args:
      global_batch_size: videos per step over all replicas (split per replica by the input context).
      drop_remainder: drop a last, smaller batch.

    Returns:
      `(dataset, input_context) -> dataset`, or None.
    """
    if self._canvas_size is None:
      return None
    clip_shape = [self._num_frames, *self._canvas_size, 3]
    padded_shapes = ({**{_clip_key(index): clip_shape for index in range(self._num_clips)},
                      'window_size': [self._num_clips, 2], 'flip': [self._num_clips]}, {'label': []})

    def batch(dataset: tf.data.Dataset, input_context: Optional[tf.distribute.InputContext] = None):
      per_replica = (input_context.get_per_replica_batch_size(global_batch_size) if input_context
                     else global_batch_size)
      return dataset.padded_batch(per_replica, padded_shapes=padded_shapes, drop_remainder=drop_remainder)

    return batch

  def _label(self, decoded_tensors: Dict[str, tf.Tensor]) -> tf.Tensor:
    """The first class index as int32, or -1 for unlabeled videos."""
    labels = decoded_tensors.get(self._label_key)
    if labels is None:
      return tf.constant(feature_keys.UNLABELED_INDEX, tf.int32)
    # Appending the unlabeled marker makes "first entry" well defined for empty label lists.
    labels = tf.concat([tf.reshape(tf.cast(labels, tf.int32), [-1]), [feature_keys.UNLABELED_INDEX]], axis=0)
    return labels[0]

  def _sample_and_decode_clips(self, encoded: tf.Tensor, video_id: tf.Tensor, seed: tf.Tensor
                               ) -> Dict[str, tf.Tensor]:
    """rho > 2 clips: starts, one window and flip per clip, shared decoding; features as `_decode_pair`."""
    seeds = tf.unstack(tf.random.experimental.stateless_split(seed, 1 + 2 * self._num_clips))
    num_video_frames = tf.shape(encoded)[0]
    starts = temporal_sampling.sample_clip_start_indices(
        num_video_frames, self.clip_span, self._num_clips, self._interval_distribution, self._interval_power,
        temporal_augmentation=self._temporal_augmentation, seed=seeds[0])
    indices = tf.stack([
        temporal_sampling.clip_frame_indices(start, self._num_frames, self._stride, num_video_frames,
                                             video_id=video_id)
        for start in tf.unstack(starts)])
    image_shape_hw = tf.io.extract_jpeg_shape(encoded[0])[:2]
    window_seeds = seeds[1:1 + self._num_clips]
    flip_seeds = seeds[1 + self._num_clips:]
    if not self._spatial_augmentation:
      windows = tf.stack([video_augment.central_crop_window(image_shape_hw)] * self._num_clips)
    else:
      kwargs = dict(area_range=self._crop_area_range, aspect_ratio_range=self._crop_aspect_ratio_range)
      if self._temporally_consistent:
        windows = tf.stack([video_augment.sample_crop_window(image_shape_hw, seed=s, **kwargs) for s in window_seeds])
      else:
        windows = tf.stack([video_augment.sample_crop_windows(image_shape_hw, self._num_frames, seed=s, **kwargs)
                            for s in window_seeds])
    if self._canvas_size is not None:
      return self._on_canvas(video_augment.decode_crop_clips(encoded, indices, windows),
                             self._sample_flips(flip_seeds))
    clips = video_augment.decode_crop_resize_clips(encoded, indices, windows, self._crop_size)
    if self._spatial_augmentation:
      clips = tf.stack([video_augment.flip_left_right_clip(clip, flip)
                        for clip, flip in zip(tf.unstack(clips), self._sample_flips(flip_seeds))])
    return {'image': clips}

  def _parse(self, decoded_tensors: Dict[str, tf.Tensor], seed: tf.Tensor
             ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    encoded = decoded_tensors[self._image_key]
    video_id = decoded_tensors.get(feature_keys.VIDEO_ID_KEY, tf.constant(''))
    if self._num_clips > 2:
      features = self._sample_and_decode_clips(encoded, video_id, seed)
    else:
      seeds = tf.unstack(tf.random.experimental.stateless_split(seed, _NUM_SEEDS))
      first, second, num_shared = self._sample_pair(encoded, video_id, seeds[0])
      features = self._decode_pair((first, second), num_shared, seeds)
    if self._canvas_size is None:
      features['image'] = tf.ensure_shape(
          features['image'], [self._num_clips, self._num_frames, self._crop_size, self._crop_size, 3])
    return features, {'label': self._label(decoded_tensors)}

  def _parse_train_data(self, decoded_tensors: Dict[str, tf.Tensor]
                        ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Parses one training example.

    Args:
      decoded_tensors: output of `video_decoder.Decoder.decode`.

    Returns:
      features {'image': uint8 `[rho, T, S, S, 3]`} (with a canvas: see `_on_canvas`) and labels
      {'label': int32 scalar, -1 if unlabeled}.
    """
    return self._parse(decoded_tensors, temporal_sampling.stateless_seed(None))

  def _parse_eval_data(self, decoded_tensors: Dict[str, tf.Tensor]
                       ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    """Parses one evaluation example with random draws seeded by the video itself (deterministic per video).

    Args:
      decoded_tensors: output of `video_decoder.Decoder.decode`.

    Returns:
      As `_parse_train_data`.
    """
    encoded = decoded_tensors[self._image_key]
    video_id = decoded_tensors.get(feature_keys.VIDEO_ID_KEY, tf.constant(''))
    # The id alone may be missing (''), the first frame alone may repeat across videos: hash both.
    key = tf.strings.join([video_id, tf.strings.reduce_join(encoded[:1])], separator='|')
    return self._parse(decoded_tensors, temporal_sampling.stateless_seed(
        tf.strings.to_hash_bucket_fast(key, tf.int64.max)))


class PostBatchProcessor:
  """Folds the clip axis into the batch: `[batch, rho, T, S, S, 3]` -> `[rho * batch, T, S, S, 3]`.

  Rows v * batch .. (v + 1) * batch - 1 hold clip v of every video, so rows i, batch + i, ... are the clips of
  video i (the contrastive loss splits the batch into rho equal parts). Labels stay `[batch]`. With a canvas the
  clips arrive as 'clip_v' `[batch, T, canvas_h, canvas_w, 3]` and are concatenated in the same order into
  'image'; 'window_size' `[batch, rho, 2]` and 'flip' `[batch, rho]` are folded like the clips.
  """

  def __call__(self, features: Dict[str, tf.Tensor], labels: Dict[str, tf.Tensor]
               ) -> Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]]:
    features = dict(features)
    clips = []
    while _clip_key(len(clips)) in features:
      clips.append(features.pop(_clip_key(len(clips))))
    folded = {key: tf.concat(tf.unstack(value, axis=1), axis=0) for key, value in features.items()}
    if clips:
      folded['image'] = tf.concat(clips, axis=0)
    return folded, labels
