"""CPU-side spatial augmentation of video clips: crop windows, partial JPEG decoding, resize, flip.

CVRL's temporally consistent spatial augmentation (paper Algorithm 1) draws one crop box and one flip flag per clip
and applies them to every frame; the "no TC" ablation (Table 9) draws them per frame. Here the crop is applied
while decoding: `tf.io.decode_and_crop_jpeg` still entropy-decodes the whole frame (baseline JPEG cannot skip
that) but runs the inverse DCT, chroma upsampling and colour conversion only inside the window, which saves about a
quarter of the decode time for a typical crop. Frames shared by the two clips of a pair are decoded once
(`decode_crop_resize_pair`). Colour jitter, greyscale and blur run later on the accelerator (`color_augment`);
`decode_crop_pair` and `decode_crop_clips` stop before the resize, for a resize on the accelerator
(`window_resize`).

A crop window is an int32 `[4]` tensor `(offset_y, offset_x, height, width)` in pixels of the stored frame, the
argument order of `tf.io.decode_and_crop_jpeg`.

Decoding is exact: decoding a window equals decoding the whole frame then slicing, bit for bit. libjpeg's cropped
decode is *not* exact on chroma-subsampled (4:2:0) JPEGs, where the chroma upsampling of the window's boundary
columns lacks its outside neighbours (errors up to a few grey levels); we decode a window widened by
`_DECODE_MARGIN` pixels on every side and slice the margin off, which costs ~nothing because libjpeg decodes whole
MCU columns anyway.
"""
from typing import List, Optional, Sequence, Tuple, Union

import tensorflow as tf

from official_cvrl.ops import temporal_sampling

# Extra pixels decoded around a crop window so chroma upsampling at the window edges sees its real neighbours
# (2 suffice for 4:2:0 and 4:2:2; 4 also covers 4:1:1).
_DECODE_MARGIN = 4

SizeLike = Union[int, Sequence[int]]


def as_hw(size: SizeLike) -> Tuple[int, int]:
  """An int or (height, width) output size as a (height, width) pair of ints."""
  if isinstance(size, int):
    return size, size
  height, width = size
  return int(height), int(width)


def sample_crop_window(image_shape_hw: tf.Tensor,
                       area_range: Tuple[float, float] = (0.3, 1.0),
                       aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
                       seed: temporal_sampling.SeedLike = None,
                       max_attempts: int = 10) -> tf.Tensor:
  """Draws a random crop window (Algorithm 1: area ratio in [0.3, 1], aspect ratio in [0.5, 2]).

  Uses `tf.image.stateless_sample_distorted_bounding_box` with no object constraint: it draws an aspect ratio
  (width / height) and an area fraction uniformly, retries up to `max_attempts` times while the box does not fit,
  then falls back to the whole frame (which is in `area_range` when its upper bound is 1).

  Args:
    image_shape_hw: int `[2]` (height, width) of the frame.
    area_range: range of the crop area as a fraction of the frame area.
    aspect_ratio_range: range of the crop width / height.
    seed: see `temporal_sampling.stateless_seed`.
    max_attempts: tries before the whole-frame fallback.

  Returns:
    int32 `[4]` window (offset_y, offset_x, height, width).
  """
  image_shape_hw = tf.cast(image_shape_hw, tf.int32)
  begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
      tf.concat([image_shape_hw, [3]], axis=0),
      bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
      seed=temporal_sampling.stateless_seed(seed),
      min_object_covered=0.0,
      aspect_ratio_range=aspect_ratio_range,
      area_range=area_range,
      max_attempts=max_attempts,
      use_image_if_no_bounding_boxes=True)
  return tf.stack([begin[0], begin[1], size[0], size[1]])


def sample_crop_windows(image_shape_hw: tf.Tensor,
                        num_windows: int,
                        area_range: Tuple[float, float] = (0.3, 1.0),
                        aspect_ratio_range: Tuple[float, float] = (0.5, 2.0),
                        seed: temporal_sampling.SeedLike = None) -> tf.Tensor:
  """Draws `num_windows` independent crop windows (one per frame: the "no TC" ablation).

  Args:
    image_shape_hw: int `[2]` (height, width) of the frames.
    num_windows: number of windows.
    area_range: see `sample_crop_window`.
    aspect_ratio_range: see `sample_crop_window`.
    seed: see `temporal_sampling.stateless_seed`.

  Returns:
    int32 `[num_windows, 4]` windows.
  """
  seeds = tf.random.experimental.stateless_split(temporal_sampling.stateless_seed(seed), num_windows)
  return tf.map_fn(
      lambda s: sample_crop_window(image_shape_hw, area_range, aspect_ratio_range, seed=s),
      seeds, fn_output_signature=tf.TensorSpec([4], tf.int32))


def central_crop_window(image_shape_hw: tf.Tensor, crop_hw: Optional[tf.Tensor] = None) -> tf.Tensor:
  """The centred window of size `crop_hw`; by default the largest centred square (side = short side).

  Args:
    image_shape_hw: int `[2]` (height, width) of the frame.
    crop_hw: optional int `[2]` window size, at most the frame size.

  Returns:
    int32 `[4]` window (offset_y, offset_x, height, width).
  """
  image_shape_hw = tf.cast(image_shape_hw, tf.int32)
  if crop_hw is None:
    crop_hw = tf.fill([2], tf.reduce_min(image_shape_hw))
  crop_hw = tf.cast(crop_hw, tf.int32)
  offset = (image_shape_hw - crop_hw) // 2
  return tf.concat([offset, crop_hw], axis=0)


def three_crop_windows(image_shape_hw: tf.Tensor,
                       crop_size: Optional[temporal_sampling.IntLike] = None) -> tf.Tensor:
  """Three square windows along the long side (left/centre/right or top/centre/bottom) for 3-crop testing.

  The evaluation protocol resizes frames so the short side equals the crop size, then takes three squares that
  together cover the long side; the windows are centred along the short side.

  Args:
    image_shape_hw: int `[2]` (height, width) of the (resized) frame.
    crop_size: square side; by default the short side.

  Returns:
    int32 `[3, 4]` windows in the order start, centre, end of the long side.
  """
  image_shape_hw = tf.cast(image_shape_hw, tf.int32)
  short = tf.reduce_min(image_shape_hw)
  size = short if crop_size is None else tf.minimum(tf.cast(crop_size, tf.int32), short)
  height, width = image_shape_hw[0], image_shape_hw[1]
  landscape = width >= height
  long_room = tf.where(landscape, width, height) - size
  short_offset = (tf.where(landscape, height, width) - size) // 2
  along = tf.stack([0, long_room // 2, long_room])
  across = tf.fill([3], short_offset)
  offset_y = tf.where(landscape, across, along)
  offset_x = tf.where(landscape, along, across)
  return tf.stack([offset_y, offset_x, tf.fill([3], size), tf.fill([3], size)], axis=1)


def crop_window_union(window_a: tf.Tensor, window_b: tf.Tensor) -> tf.Tensor:
  """The smallest window containing both windows (decoding it once serves both crops).

  Args:
    window_a: int32 `[..., 4]` windows.
    window_b: int32 `[..., 4]` windows, same shape.

  Returns:
    int32 `[..., 4]` bounding windows.
  """
  window_a = tf.cast(window_a, tf.int32)
  window_b = tf.cast(window_b, tf.int32)
  low = tf.minimum(window_a[..., :2], window_b[..., :2])
  high = tf.maximum(window_a[..., :2] + window_a[..., 2:], window_b[..., :2] + window_b[..., 2:])
  return tf.concat([low, high - low], axis=-1)


def _slice_window(images: tf.Tensor, outer: tf.Tensor, inner: tf.Tensor) -> tf.Tensor:
  """Slices window `inner` out of images that hold the pixels of window `outer` (inner inside outer).

  Args:
    images: `[..., outer_h, outer_w, C]`.
    outer: int32 `[4]` window the images were decoded with.
    inner: int32 `[4]` window inside `outer`.

  Returns:
    `[..., inner_h, inner_w, C]`.
  """
  top, left = inner[0] - outer[0], inner[1] - outer[1]
  return images[..., top:top + inner[2], left:left + inner[3], :]


def _widened_window(window: tf.Tensor, image_shape_hw: tf.Tensor) -> tf.Tensor:
  """`window` grown by `_DECODE_MARGIN` pixels on every side, clipped to the frame, after checking it fits.

  Args:
    window: int32 `[4]` window.
    image_shape_hw: int32 `[2]` frame size.

  Returns:
    int32 `[4]` window to decode.
  """
  start, size = window[:2], window[2:]
  fits = tf.debugging.assert_less_equal(
      start + size, image_shape_hw,
      message='Crop window exceeds the frame: all frames of a video must have the same size as its first frame.')
  with tf.control_dependencies([fits]):
    low = tf.maximum(start - _DECODE_MARGIN, 0)
  high = tf.minimum(start + size + _DECODE_MARGIN, image_shape_hw)
  return tf.concat([low, high - low], axis=0)


def _decode_frame(encoded: tf.Tensor, window: tf.Tensor) -> tf.Tensor:
  """Decodes one JPEG frame's window exactly (see the module docstring for the margin).

  Args:
    encoded: string scalar, one JPEG frame.
    window: int32 `[4]` window inside the frame.

  Returns:
    uint8 `[height, width, 3]` pixels of the window.
  """
  wide_window = _widened_window(window, tf.io.extract_jpeg_shape(encoded)[:2])
  wide = tf.io.decode_and_crop_jpeg(encoded, wide_window, channels=3)
  return _slice_window(wide, wide_window, window)


def _decode_window(encoded_frames: tf.Tensor, window: tf.Tensor,
                   image_shape_hw: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Decodes the same (widened) window of every frame; an empty frame list gives an empty batch.

  The margin is not sliced off here: callers slice their crops out of the widened window in one batched op.

  Args:
    encoded_frames: string `[N]` JPEG frames of size `image_shape_hw`.
    window: int32 `[4]` window.
    image_shape_hw: int32 `[2]` frame size.

  Returns:
    uint8 `[N, h, w, 3]` pixels of the widened window, and that int32 `[4]` window (use `_slice_window`).
  """
  wide_window = _widened_window(window, image_shape_hw)

  def decode_all():
    return tf.map_fn(lambda encoded: tf.io.decode_and_crop_jpeg(encoded, wide_window, channels=3), encoded_frames,
                     fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))

  # map_fn cannot stack zero elements of unknown shape, and groups of a pair may be empty.
  pixels = tf.cond(tf.size(encoded_frames) > 0, decode_all,
                   lambda: tf.zeros([0, wide_window[2], wide_window[3], 3], tf.uint8))
  return pixels, wide_window


def resize_to_uint8(images: tf.Tensor, size_hw: Tuple[int, int]) -> tf.Tensor:
  """Bilinear resize of uint8 `[..., H, W, 3]` images to `size_hw`, rounded back to uint8 (half up).

  The one rounding resize of the CPU paths (training crops, test views, crops too large for a canvas), so they
  all deliver the same pixels.
  """
  resized = tf.image.resize(images, size_hw, method='bilinear')
  # Bilinear weights are convex, so values stay in [0, 255]; +0.5 then truncation rounds half up, which is
  # much cheaper than tf.round on CPU.
  return tf.cast(resized + 0.5, tf.uint8)


def decode_crop_resize(encoded_frames: tf.Tensor, crop_windows: tf.Tensor, output_size: SizeLike) -> tf.Tensor:
  """Decodes only the crop window of each JPEG frame and resizes it (bilinear) to `output_size`.

  Args:
    encoded_frames: string `[N]` JPEG frames of one video.
    crop_windows: int32 `[4]` (one window for all frames: temporally consistent) or `[N, 4]` (one per frame).
    output_size: int or (height, width).

  Returns:
    uint8 `[N, out_h, out_w, 3]`.
  """
  size_hw = as_hw(output_size)
  crop_windows = tf.cast(crop_windows, tf.int32)
  if crop_windows.shape.rank == 1:
    pixels, decoded_window = _decode_window(
        encoded_frames, crop_windows, tf.io.extract_jpeg_shape(encoded_frames[0])[:2])
    return resize_to_uint8(_slice_window(pixels, decoded_window, crop_windows), size_hw)
  if crop_windows.shape.rank != 2:
    raise ValueError(f'crop_windows must be [4] or [N, 4], got shape {crop_windows.shape}.')

  def decode_one(args):
    encoded, window = args
    return resize_to_uint8(_decode_frame(encoded, window), size_hw)

  return tf.map_fn(decode_one, (encoded_frames, crop_windows),
                   fn_output_signature=tf.TensorSpec(size_hw + (3,), tf.uint8))


def decode_crop_pair(first_frames: tf.Tensor,
                     second_frames: tf.Tensor,
                     num_shared: temporal_sampling.IntLike,
                     first_window: tf.Tensor,
                     second_window: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Decodes the crop window of every frame of a pair's two clips, each shared frame once; no resize.

  Shared frames (see `decode_crop_resize_pair`) are decoded once with the union of both windows and each clip's
  crop is sliced from it. Used directly when the resize runs on the accelerator (`ops.window_resize`).

  Args:
    first_frames: string `[K]` JPEG frames of the earlier clip.
    second_frames: string `[K]` JPEG frames of the later clip.
    num_shared: int scalar in [0, K], frames shared by the two clips (0 is always correct, only slower).
    first_window: int32 `[4]` window of the first clip.
    second_window: int32 `[4]` window of the second clip.

  Returns:
    Two uint8 clips, `[K, h1, w1, 3]` and `[K, h2, w2, 3]`, their windows' pixels.
  """
  first_window = tf.cast(first_window, tf.int32)
  second_window = tf.cast(second_window, tf.int32)
  num_shared = tf.cast(num_shared, tf.int32)
  num_first_only = tf.shape(first_frames)[0] - num_shared
  first_only, shared = first_frames[:num_first_only], first_frames[num_first_only:]
  second_only = second_frames[num_shared:]
  # All frames of a video have the first frame's size (checked against each window while decoding).
  image_shape_hw = tf.io.extract_jpeg_shape(first_frames[0])[:2]
  shared_pixels, shared_decoded = _decode_window(shared, crop_window_union(first_window, second_window),
                                                 image_shape_hw)
  first_pixels, first_decoded = _decode_window(first_only, first_window, image_shape_hw)
  second_pixels, second_decoded = _decode_window(second_only, second_window, image_shape_hw)
  first = tf.concat([_slice_window(first_pixels, first_decoded, first_window),
                     _slice_window(shared_pixels, shared_decoded, first_window)], axis=0)
  second = tf.concat([_slice_window(shared_pixels, shared_decoded, second_window),
                      _slice_window(second_pixels, second_decoded, second_window)], axis=0)
  return first, second


def decode_crop_resize_pair(first_frames: tf.Tensor,
                            second_frames: tf.Tensor,
                            num_shared: temporal_sampling.IntLike,
                            first_windows: tf.Tensor,
                            second_windows: tf.Tensor,
                            output_size: SizeLike) -> Tuple[tf.Tensor, tf.Tensor]:
  """Decodes, crops and resizes the two clips of a pair, decoding every shared frame once.

  The clips of a pair overlap whenever their interval is a multiple of the stride and shorter than a clip: then
  the last `num_shared` frames of the first clip are the first `num_shared` frames of the second clip (see
  `temporal_sampling.shared_frame_count`). Frames used by one clip are decoded with that clip's window only;
  shared frames are decoded once with the union of both windows and each clip's crop is sliced from it.

  Args:
    first_frames: string `[K]` JPEG frames of the earlier clip.
    second_frames: string `[K]` JPEG frames of the later clip.
    num_shared: int scalar in [0, K], frames shared as described above (0 is always correct, only slower).
    first_windows: int32 `[4]` window of the first clip, or `[K, 4]` per-frame windows (no-TC ablation).
    second_windows: same for the second clip, same rank as `first_windows`.
    output_size: int or (height, width).

  Returns:
    Two uint8 `[K, out_h, out_w, 3]` clips.
  """
  size_hw = as_hw(output_size)
  first_windows = tf.cast(first_windows, tf.int32)
  second_windows = tf.cast(second_windows, tf.int32)
  if first_windows.shape.rank != second_windows.shape.rank or first_windows.shape.rank not in (1, 2):
    raise ValueError('first_windows and second_windows must both be [4] or both be [K, 4], got shapes '
                     f'{first_windows.shape} and {second_windows.shape}.')
  if first_windows.shape.rank == 1:
    first, second = decode_crop_pair(first_frames, second_frames, num_shared, first_windows, second_windows)
    first, second = resize_to_uint8(first, size_hw), resize_to_uint8(second, size_hw)
  else:
    num_shared = tf.cast(num_shared, tf.int32)
    num_first_only = tf.shape(first_frames)[0] - num_shared
    shared, second_only = first_frames[num_first_only:], second_frames[num_shared:]

    def decode_shared(args):
      encoded, window_a, window_b = args
      union = crop_window_union(window_a, window_b)
      pixels = _decode_frame(encoded, union)
      return (resize_to_uint8(_slice_window(pixels, union, window_a), size_hw),
              resize_to_uint8(_slice_window(pixels, union, window_b), size_hw))

    frame_spec = tf.TensorSpec(size_hw + (3,), tf.uint8)
    shared_first, shared_second = tf.map_fn(
        decode_shared, (shared, first_windows[num_first_only:], second_windows[:num_shared]),
        fn_output_signature=(frame_spec, frame_spec))
    first = tf.concat([decode_crop_resize(first_frames[:num_first_only], first_windows[:num_first_only], size_hw),
                       shared_first],
                      axis=0)
    second = tf.concat([shared_second, decode_crop_resize(second_only, second_windows[num_shared:], size_hw)],
                       axis=0)
  clip_shape = [first_frames.shape[0], size_hw[0], size_hw[1], 3]
  return tf.ensure_shape(first, clip_shape), tf.ensure_shape(second, clip_shape)


def decode_crop_resize_clips(encoded_video: tf.Tensor,
                             frame_indices: tf.Tensor,
                             windows: tf.Tensor,
                             output_size: SizeLike) -> tf.Tensor:
  """Decodes, crops and resizes rho clips of one video, decoding every frame used by any clip once.

  The rho > 2 counterpart of `decode_crop_resize_pair`: clips of one video may share frames in any combination,
  so the distinct frames are decoded whole, once, and every clip's crops are sliced from them. The pixels equal
  `decode_crop_resize` of each clip on its own (window decoding is exact, see the module docstring).

  Args:
    encoded_video: string `[N]` JPEG frames of the video.
    frame_indices: int32 `[rho, K]` frame indices of each clip.
    windows: int32 `[rho, 4]` one window per clip, or `[rho, K, 4]` per frame (no-TC ablation).
    output_size: int or (height, width).

  Returns:
    uint8 `[rho, K, out_h, out_w, 3]`.
  """
  size_hw = as_hw(output_size)
  windows = tf.cast(windows, tf.int32)
  if windows.shape.rank not in (2, 3):
    raise ValueError(f'windows must be [rho, 4] or [rho, K, 4], got shape {windows.shape}.')
  clip_frames, full_window = _decode_clip_frames(encoded_video, frame_indices, windows)
  clips = []
  for clip, frames in enumerate(clip_frames):
    if windows.shape.rank == 2:
      clips.append(resize_to_uint8(_slice_window(frames, full_window, windows[clip]), size_hw))
    else:
      clips.append(tf.map_fn(
          lambda args: resize_to_uint8(_slice_window(args[0], full_window, args[1]), size_hw),
          (frames, windows[clip]), fn_output_signature=tf.TensorSpec(size_hw + (3,), tf.uint8)))
  return tf.stack(clips)


def decode_crop_clips(encoded_video: tf.Tensor, frame_indices: tf.Tensor, windows: tf.Tensor) -> List[tf.Tensor]:
  """Decodes rho clips of one video, every frame once, and crops each clip's window; no resize.

  The counterpart of `decode_crop_resize_clips` for a resize on the accelerator (`ops.window_resize`).

  Args:
    encoded_video: string `[N]` JPEG frames of the video.
    frame_indices: int32 `[rho, K]` frame indices of each clip.
    windows: int32 `[rho, 4]`, one window per clip.

  Returns:
    rho uint8 clips `[K, h_i, w_i, 3]`, the pixels of each clip's window.
  """
  windows = tf.cast(windows, tf.int32)
  if windows.shape.rank != 2:
    raise ValueError(f'windows must be [rho, 4], got shape {windows.shape}.')
  clip_frames, full_window = _decode_clip_frames(encoded_video, frame_indices, windows)
  return [_slice_window(frames, full_window, windows[clip]) for clip, frames in enumerate(clip_frames)]


def _decode_clip_frames(encoded_video: tf.Tensor, frame_indices: tf.Tensor, windows: tf.Tensor
                        ) -> Tuple[List[tf.Tensor], tf.Tensor]:
  """Decodes the distinct frames of rho clips whole, once, after checking the windows fit the frame.

  Returns:
    rho uint8 `[K, H, W, 3]` clips of whole frames, and the int32 `[4]` window of a whole frame.
  """
  frame_indices = tf.cast(frame_indices, tf.int32)
  num_clips, clip_length = frame_indices.shape[0], frame_indices.shape[1]
  unique_indices, position = tf.unique(tf.reshape(frame_indices, [-1]))
  image_shape_hw = tf.io.extract_jpeg_shape(encoded_video[0])[:2]
  full_window = tf.concat([[0, 0], image_shape_hw], axis=0)
  fits = tf.debugging.assert_less_equal(
      windows[..., :2] + windows[..., 2:], image_shape_hw,
      message='Crop window exceeds the frame: all frames of a video must have the same size as its first frame.')
  with tf.control_dependencies([fits]):
    pixels = tf.map_fn(lambda encoded: tf.io.decode_jpeg(encoded, channels=3),
                       tf.gather(encoded_video, unique_indices),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  position = tf.reshape(position, [num_clips, clip_length])
  return [tf.gather(pixels, position[clip]) for clip in range(num_clips)], full_window


def resize_short_side(frames: tf.Tensor, short_side: int) -> tf.Tensor:
  """Resizes frames (bilinear) so their short side is `short_side`, keeping the aspect ratio.

  Args:
    frames: `[T, H, W, 3]` uint8 or float frames.
    short_side: target length of the shorter side.

  Returns:
    `[T, H', W', 3]` frames with min(H', W') = short_side, uint8 if the input is uint8, else float32.
  """
  shape_hw = tf.cast(tf.shape(frames)[1:3], tf.float32)
  scale = short_side / tf.reduce_min(shape_hw)
  new_hw = tf.maximum(tf.cast(tf.round(shape_hw * scale), tf.int32), short_side)
  if frames.dtype == tf.uint8:
    return tf.cast(tf.image.resize(frames, new_hw, method='bilinear') + 0.5, tf.uint8)
  return tf.image.resize(frames, new_hw, method='bilinear')


def flip_left_right_clip(frames: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
  """Mirrors frames horizontally: the whole clip (scalar flag) or selected frames (per-frame flags).

  Args:
    frames: `[T, H, W, C]` frames.
    flip: bool scalar (temporally consistent) or bool `[T]` (one flag per frame, the no-TC ablation).

  Returns:
    `[T, H, W, C]` frames.
  """
  flip = tf.convert_to_tensor(flip, tf.bool)
  if flip.shape.rank == 0:
    return tf.cond(flip, lambda: tf.reverse(frames, axis=[2]), lambda: frames)
  return tf.where(tf.reshape(flip, [-1, 1, 1, 1]), tf.reverse(frames, axis=[2]), frames)
