"""Tests of the multi-view testing ops against NumPy references, eagerly and inside tf.data."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.ops import multi_view


def _softmax64(logits):
  logits = logits.astype(np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


class AverageViewsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 3, 30)
  def test_matches_numpy(self, num_views):
    rng = np.random.default_rng(num_views)
    logits = rng.normal(size=(4 * num_views, 7)).astype(np.float32)
    probabilities = tf.nn.softmax(logits)
    expected = _softmax64(logits).reshape(4, num_views, 7).mean(axis=1)
    self.assertAllClose(multi_view.average_views(probabilities, num_views), expected, atol=1e-6)

  def test_rejects_zero_views(self):
    with self.assertRaisesRegex(ValueError, 'num_views'):
      multi_view.average_views(tf.zeros([2, 3]), 0)


class ClipsFrameIndicesTest(tf.test.TestCase):

  def test_evenly_spaced(self):
    indices = multi_view.clips_frame_indices(30, num_clip_frames=4, stride=3, num_clips=3)
    # Span 10: starts 0, (30 - 10) // 2 = 10, 20.
    self.assertAllEqual(indices, [[0, 3, 6, 9], [10, 13, 16, 19], [20, 23, 26, 29]])


class DecodeFramesOnceTest(tf.test.TestCase):

  def _encoded(self, num_frames):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (num_frames, 8, 12, 3), dtype=np.uint8)
    return tf.stack([tf.io.encode_jpeg(f) for f in frames])

  def test_equals_decoding_each_frame(self):
    encoded = self._encoded(5)
    indices = tf.constant([[0, 2, 4], [2, 4, 1]])
    frames = multi_view.decode_frames_once(encoded, indices)
    self.assertEqual(frames.shape, (2, 3, 8, 12, 3))
    for i in range(2):
      for j in range(3):
        self.assertAllEqual(frames[i, j], tf.io.decode_jpeg(encoded[int(indices[i, j])], channels=3))

  def test_inside_dataset_map(self):
    encoded = self._encoded(4)
    dataset = tf.data.Dataset.from_tensors(encoded).map(
        lambda e: multi_view.decode_frames_once(e, tf.constant([[3, 0]])))
    frames = next(iter(dataset))
    self.assertAllEqual(frames[0, 0], tf.io.decode_jpeg(encoded[3], channels=3))


class CropAndResizeViewsTest(tf.test.TestCase):

  def test_views_are_clip_major_slices(self):
    frames = tf.reshape(tf.range(2 * 3 * 4 * 6 * 3) % 251, [2, 3, 4, 6, 3])
    frames = tf.cast(frames, tf.uint8)
    windows = tf.constant([[0, 0, 4, 4], [0, 2, 4, 4]])
    views = multi_view.crop_and_resize_views(frames, windows, 4)
    self.assertEqual(views.shape, (4, 3, 4, 4, 3))
    self.assertAllEqual(views[0], frames[0, :, :, 0:4])
    self.assertAllEqual(views[1], frames[0, :, :, 2:6])
    self.assertAllEqual(views[2], frames[1, :, :, 0:4])
    self.assertAllEqual(views[3], frames[1, :, :, 2:6])


class CropTestViewsTest(tf.test.TestCase):

  def test_three_views_are_both_ends_and_centre_of_the_long_side(self):
    frames = np.arange(2 * 1 * 4 * 10 * 3, dtype=np.uint8).reshape([2, 1, 4, 10, 3])  # Portrait would swap axes.
    views = multi_view.crop_test_views(tf.constant(frames), 4, 3).numpy()
    self.assertEqual(views.shape, (6, 1, 4, 4, 3))
    for clip in range(2):
      for crop, left in enumerate((0, 3, 6)):
        self.assertAllEqual(views[3 * clip + crop], frames[clip][:, :, left:left + 4])
    centre = multi_view.crop_test_views(tf.constant(frames), 4, 1).numpy()
    self.assertAllEqual(centre, frames[:, :, :, 3:7])

  def test_other_crop_counts_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'num_crops must be 1 or 3, got 5'):
      multi_view.crop_test_views(tf.zeros([1, 1, 4, 4, 3], tf.uint8), 4, 5)


if __name__ == '__main__':
  tf.test.main()
