"""Tests of the resize on the accelerator (`ops.window_resize`) against a float64 NumPy bilinear and the CPU path."""
import numpy as np
import tensorflow as tf

from official_cvrl.ops import video_augment
from official_cvrl.ops import window_resize

# Window sizes smaller, equal to and larger than the output, of both aspect ratios, and 1-pixel windows.
_WINDOWS = ((5, 7), (16, 16), (23, 40), (40, 23), (1, 1), (1, 30), (48, 64))
_OUT = 16
_CANVAS = (48, 64)


def _bilinear_reference(image: np.ndarray, out_hw) -> np.ndarray:
  """Half-pixel-centre bilinear resize in float64, from its definition (sample (i + .5) * in / out - .5)."""
  image = image.astype(np.float64)

  def axis(valid, out):
    position = np.maximum((np.arange(out) + 0.5) * valid / out - 0.5, 0.0)
    lower = np.minimum(np.floor(position).astype(int), valid - 1)
    upper = np.minimum(lower + 1, valid - 1)
    return lower, upper, position - np.floor(position)

  top, bottom, wy = axis(image.shape[-3], out_hw[0])
  left, right, wx = axis(image.shape[-2], out_hw[1])
  rows = (image[..., top, :, :] * (1 - wy)[:, None, None] + image[..., bottom, :, :] * wy[:, None, None])
  return rows[..., left, :] * (1 - wx)[:, None] + rows[..., right, :] * wx[:, None]


def _on_canvas(crops):
  """fit_to_canvas, then the zero padding bottom and right that `padded_batch` adds; and the window size."""
  fitted = window_resize.fit_to_canvas(tf.constant(crops), _CANVAS, _OUT)
  size = tf.shape(fitted)[1:3]
  return tf.pad(fitted, [[0, 0], [0, _CANVAS[0] - size[0]], [0, _CANVAS[1] - size[1]], [0, 0]]), size


def _assert_same_up_to_ties(test, got, exact):
  """uint8 `got` equals floor(exact + .5), except one grey level where `exact` is a float32 hair from a tie."""
  expected = np.floor(exact + 0.5)
  difference = np.abs(got.astype(np.float64) - expected)
  test.assertLessEqual(difference.max(), 1.0)
  near_tie = np.abs(exact - np.floor(exact) - 0.5) < 1e-3
  test.assertFalse(np.any((difference > 0) & ~near_tie), 'differences away from rounding ties')


class WindowResizeTest(tf.test.TestCase):

  def _clips(self, seed=0):
    rng = np.random.default_rng(seed)
    crops = [rng.integers(0, 256, (3, h, w, 3), dtype=np.uint8) for h, w in _WINDOWS]
    flips = rng.integers(0, 2, len(crops)).astype(bool)
    padded, sizes = zip(*[_on_canvas(c) for c in crops])
    return crops, flips, tf.stack(padded), tf.stack(sizes)

  def test_equals_float64_bilinear_with_flip(self):
    crops, flips, canvases, sizes = self._clips()
    got = window_resize.resize_windows(canvases, sizes, flips, _OUT).numpy()
    self.assertEqual(got.shape, (len(_WINDOWS), 3, _OUT, _OUT, 3))
    for clip, crop in enumerate(crops):
      exact = _bilinear_reference(crop, (_OUT, _OUT))
      if flips[clip]:
        exact = exact[:, :, ::-1]
      _assert_same_up_to_ties(self, got[clip], exact)

  def test_equals_the_cpu_path(self):
    """Resize on the accelerator == `video_augment`'s resize then flip, what the CPU pipeline delivers."""
    crops, flips, canvases, sizes = self._clips(seed=1)
    got = window_resize.resize_windows(canvases, sizes, flips, _OUT).numpy()
    for clip, crop in enumerate(crops):
      cpu = video_augment.resize_to_uint8(tf.constant(crop), (_OUT, _OUT))
      cpu = video_augment.flip_left_right_clip(cpu, bool(flips[clip])).numpy()
      difference = np.abs(got[clip].astype(int) - cpu.astype(int))
      self.assertLessEqual(difference.max(), 1)
      self.assertLess(np.mean(difference > 0), 1e-3)

  def test_a_window_that_fits_is_shipped_as_it_is(self):
    crop = np.random.default_rng(4).integers(0, 256, (2, 5, 64, 3), dtype=np.uint8)
    self.assertAllEqual(window_resize.fit_to_canvas(tf.constant(crop), _CANVAS, _OUT), crop)

  def test_window_larger_than_the_canvas_is_resized_on_the_cpu_with_the_same_result(self):
    rng = np.random.default_rng(2)
    crop = rng.integers(0, 256, (2, 50, 30, 3), dtype=np.uint8)  # Taller than the 48-row canvas.
    canvas, size = _on_canvas(crop)
    self.assertAllEqual(size, [_OUT, _OUT])
    got = window_resize.resize_windows(canvas[tf.newaxis], size[tf.newaxis], tf.constant([True]), _OUT)[0]
    cpu = video_augment.resize_to_uint8(tf.constant(crop), (_OUT, _OUT))
    # The output-sized window resizes to itself exactly; the flip reverses it exactly.
    self.assertAllEqual(got, tf.reverse(cpu, axis=[2]))

  def test_rejects_a_canvas_smaller_than_the_output(self):
    with self.assertRaisesRegex(ValueError, 'canvas'):
      window_resize.fit_to_canvas(tf.zeros([1, 4, 4, 3], tf.uint8), (8, 12), 16)

  def test_fit_in_dataset_map_and_resize_under_xla(self):
    _, flips, canvases, sizes = self._clips(seed=3)
    dataset = tf.data.Dataset.from_tensor_slices(tf.zeros([2, 3, 50, 11, 3], tf.uint8) + 7).map(
        lambda crop: window_resize.fit_to_canvas(crop, _CANVAS, _OUT))
    for fitted in dataset:
      self.assertAllEqual(fitted, tf.fill([3, _OUT, _OUT, 3], tf.constant(7, tf.uint8)))
    eager = window_resize.resize_windows(canvases, sizes, flips, _OUT)
    compiled = tf.function(lambda c, s, f: window_resize.resize_windows(c, s, f, _OUT), jit_compile=True)
    xla = compiled(canvases, sizes, tf.constant(flips))
    difference = np.abs(xla.numpy().astype(int) - eager.numpy().astype(int))
    self.assertLessEqual(difference.max(), 1)  # XLA may contract to fused multiply-adds: ties may move.


if __name__ == '__main__':
  tf.test.main()
