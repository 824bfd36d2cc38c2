"""Tests of the rho > 2 clips path of the pretraining pipeline (ssl_input.Parser(num_clips=...))."""
import numpy as np
import tensorflow as tf

from official_cvrl.dataloaders import ssl_input
from official_cvrl.dataloaders import video_decoder
from official_cvrl.ops import video_augment
from tests.dataloaders import ssl_input_test as pair_test


def _parse(record, **kwargs):
  parser = pair_test._parser(**kwargs)  # pylint: disable=protected-access
  decoded = video_decoder.Decoder().decode(tf.constant(record))
  return parser.parse_fn(True)(decoded)


class MultiClipParserTest(tf.test.TestCase):

  def test_clips_are_in_order_strided_and_inside_the_video(self):
    frames = pair_test._index_coded_frames(24)  # pylint: disable=protected-access
    record = pair_test._record(frames)  # pylint: disable=protected-access
    for _ in range(10):
      features, _ = _parse(record, num_clips=4)
      image = features['image'].numpy()
      self.assertEqual(image.shape, (4, pair_test._CLIP_FRAMES, pair_test._CROP, pair_test._CROP, 3))
      starts = []
      for clip in image:
        indices = pair_test._frame_indices(clip)  # pylint: disable=protected-access
        np.testing.assert_array_equal(np.diff(indices), pair_test._STRIDE)
        self.assertLess(indices[-1], 24)
        starts.append(indices[0])
      self.assertEqual(starts, sorted(starts))

  def test_shared_decoding_equals_decoding_each_clip(self):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, size=(12, 24, 32, 3), dtype=np.uint8)
    encoded = tf.stack([tf.io.encode_jpeg(f, quality=90) for f in frames])
    indices = tf.constant([[0, 2, 4, 6], [2, 4, 6, 8], [4, 6, 8, 10]])  # Frames 2-8 are used by several clips.
    windows = tf.constant([[0, 0, 24, 32], [3, 5, 16, 20], [8, 10, 12, 12]])
    got = video_augment.decode_crop_resize_clips(encoded, indices, windows, 16).numpy()
    for clip in range(3):
      expected = video_augment.decode_crop_resize(tf.gather(encoded, indices[clip]), windows[clip], 16).numpy()
      np.testing.assert_array_equal(got[clip], expected)
    per_frame = tf.tile(windows[:, tf.newaxis], [1, 4, 1])
    np.testing.assert_array_equal(video_augment.decode_crop_resize_clips(encoded, indices, per_frame, 16), got)

  def test_window_outside_the_frame_is_reported(self):
    encoded = tf.stack([tf.io.encode_jpeg(tf.zeros([24, 32, 3], tf.uint8))] * 3)
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'same size as its first frame'):
      video_augment.decode_crop_resize_clips(encoded, tf.constant([[0, 1], [1, 2], [0, 2]]),
                                             tf.constant([[0, 0, 24, 32], [0, 0, 30, 32], [0, 0, 8, 8]]), 8)

  def test_post_batch_processor_groups_clip_v_of_every_video(self):
    image = tf.reshape(tf.range(2 * 3), [2, 3, 1, 1, 1, 1])  # Video b, clip v holds 3 * b + v.
    features, _ = ssl_input.PostBatchProcessor()({'image': image}, {'label': tf.constant([0, 1])})
    self.assertAllEqual(tf.reshape(features['image'], [-1]), [0, 3, 1, 4, 2, 5])

  def test_fewer_than_two_clips_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'num_clips'):
      pair_test._parser(num_clips=1)  # pylint: disable=protected-access


if __name__ == '__main__':
  tf.test.main()
