"""Resize on the accelerator: the CPU ships crop windows on a fixed canvas, the train step resizes and flips them.

On a CPU input pipeline the bilinear resize of the 32 crops of a pair costs about as much as decoding them
(docs/benchmarks.md, "Input pipeline"). Instead the CPU only decodes each clip's crop window (`fit_to_canvas`
checks it fits the canvas) and batching pads it, top-left aligned, to a canvas of fixed size (static shapes for
the accelerator and XLA); `resize_windows` then does, batched on the accelerator, the bilinear resize of every
clip's window to the output size and its flip.

The pair of functions delivers the clips the CPU path delivers (`video_augment.resize_to_uint8` then
`video_augment.flip_left_right_clip`): the same half-pixel-centre bilinear sampling as `tf.image.resize`
(sample point (i + 0.5) * in / out - 0.5, neighbours clamped to the window, horizontal interpolation before
vertical), rounded half up to uint8. Only the float arithmetic order can differ, so a value whose exact result is
within float32 rounding of a .5 tie may land one grey level away. The flip reverses the sampling positions
rather than the pixels, which is exactly the mirrored image because the sampling grid is symmetric.

A window larger than the canvas (a rare large crop of a frame bigger than the canvas) is resized on the CPU by
`fit_to_canvas` and shipped as an output-sized window; resizing an output-sized window to the output size samples
every pixel at its own position with weight 0 on the neighbour, which is the identity, so the result is the same.
"""
from typing import Tuple

import tensorflow as tf

from official_cvrl.ops import video_augment

SizeLike = video_augment.SizeLike


def fit_to_canvas(crops: tf.Tensor, canvas_size: SizeLike, output_size: SizeLike) -> tf.Tensor:
  """CPU half: one clip's crops as they will go on the canvas (resized here only if larger than the canvas).

  The padding to the canvas is left to batching (`tf.data.Dataset.padded_batch`), which writes each element
  into the batch once anyway: padding here would cost a copy of the canvas per clip (docs/benchmarks.md:
  60-63 instead of 80 pairs/s on a 2-core Xeon).

  Args:
    crops: uint8 `[K, h, w, 3]`, one crop window of every frame of a clip.
    canvas_size: int or (height, width) of the canvas, each at least the output size.
    output_size: int or (height, width) the accelerator resizes to.

  Returns:
    uint8 `[K, h', w', 3]` that fits the canvas: the crops, or, when they do not fit, their resize to the
    output size. Its height and width are the window size `resize_windows` needs.
  """
  canvas_hw, size_hw = video_augment.as_hw(canvas_size), video_augment.as_hw(output_size)
  if canvas_hw[0] < size_hw[0] or canvas_hw[1] < size_hw[1]:
    raise ValueError(f'The canvas {canvas_hw} must be at least the output size {size_hw} in both dimensions.')
  shape = tf.shape(crops)
  fits = tf.logical_and(shape[1] <= canvas_hw[0], shape[2] <= canvas_hw[1])
  return tf.cond(fits, lambda: crops, lambda: video_augment.resize_to_uint8(crops, size_hw))


def _sampling(valid: tf.Tensor, out: int, flip: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
  """Neighbours and weights of the half-pixel bilinear resize along one axis, for every clip.

  Args:
    valid: int32 `[N]` valid length of each window along the axis.
    out: output length.
    flip: bool `[N]`: mirror the output along this axis.

  Returns:
    int32 `[N, out]` lower and upper neighbour indices and float32 `[N, out]` weight of the upper one.
  """
  scale = tf.cast(valid, tf.float32) / float(out)
  position = (tf.range(out, dtype=tf.float32) + 0.5)[tf.newaxis, :] * scale[:, tf.newaxis] - 0.5
  floor = tf.floor(position)
  lower = tf.maximum(tf.cast(floor, tf.int32), 0)
  upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), valid[:, tf.newaxis] - 1)
  weight = position - floor
  mirror = flip[:, tf.newaxis]
  return (tf.where(mirror, tf.reverse(lower, [1]), lower), tf.where(mirror, tf.reverse(upper, [1]), upper),
          tf.where(mirror, tf.reverse(weight, [1]), weight))


def resize_windows(canvases: tf.Tensor, window_sizes: tf.Tensor, flips: tf.Tensor, output_size: SizeLike
                   ) -> tf.Tensor:
  """Accelerator half: bilinear resize of each clip's window to `output_size`, then its horizontal flip.

  Args:
    canvases: uint8 `[N, T, canvas_h, canvas_w, C]`: clips from `fit_to_canvas`, zero-padded bottom and right
      to the canvas (as `padded_batch` does).
    window_sizes: int `[N, 2]` (height, width) of each clip's window, at least 1 and at most the canvas.
    flips: bool `[N]`: mirror the clip horizontally.
    output_size: int or (height, width).

  Returns:
    uint8 `[N, T, out_h, out_w, C]`.
  """
  out_h, out_w = video_augment.as_hw(output_size)
  window_sizes = tf.cast(window_sizes, tf.int32)
  flips = tf.cast(flips, tf.bool)
  top, bottom, y_weight = _sampling(window_sizes[:, 0], out_h, tf.zeros_like(flips))
  left, right, x_weight = _sampling(window_sizes[:, 1], out_w, flips)
  # Rows first (the cheaper gather: out_h rows of the canvas width), then columns; [N, T, out_h, canvas_w, C].
  top_rows = tf.gather(canvases, top, axis=2, batch_dims=1)
  bottom_rows = tf.gather(canvases, bottom, axis=2, batch_dims=1)

  def columns(rows, index):
    return tf.cast(tf.gather(rows, index, axis=3, batch_dims=1), tf.float32)

  x_weight = x_weight[:, tf.newaxis, tf.newaxis, :, tf.newaxis]
  y_weight = y_weight[:, tf.newaxis, :, tf.newaxis, tf.newaxis]
  top_left, top_right = columns(top_rows, left), columns(top_rows, right)
  bottom_left, bottom_right = columns(bottom_rows, left), columns(bottom_rows, right)
  upper = top_left + (top_right - top_left) * x_weight
  lower = bottom_left + (bottom_right - bottom_left) * x_weight
  resized = upper + (lower - upper) * y_weight
  # Convex weights keep values in [0, 255]; +0.5 then truncation rounds half up, as the CPU path does.
  return tf.cast(resized + 0.5, tf.uint8)
