"""Tests of crop windows, exact partial JPEG decoding, pair decoding with shared frames, and flips."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.ops import video_augment


def _textured_frames(num_frames, height, width, seed=0):
  """Smooth colour patterns plus noise, so chroma subsampling and every pixel position matter."""
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  frames = []
  for i in range(num_frames):
    channels = [128 + 90 * np.sin(xx / (5.0 + c) + i) * np.cos(yy / (7.0 - c) - i) for c in range(3)]
    frames.append(np.stack(channels, -1) + rng.normal(0, 10, (height, width, 3)))
  return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def _encode(frames, chroma_downsampling=True):
  return tf.stack([tf.io.encode_jpeg(f, quality=90, chroma_downsampling=chroma_downsampling) for f in frames])


def _full_decode(encoded):
  return np.stack([tf.io.decode_jpeg(e, channels=3).numpy() for e in encoded.numpy()])


def _pair_with_unreadable_shared_frames(num_shared):
  """Two 4-frame clips of 8 textured frames sharing `num_shared`; the second clip's copies of the shared frames
  are undecodable, so a test passes only if every shared frame is decoded once, from the first clip."""
  encoded = _encode(_textured_frames(8, 40, 56))
  first_idx, second_idx = np.arange(4), np.arange(4 - num_shared, 8 - num_shared)
  second_frames = tf.gather(encoded, second_idx).numpy()
  second_frames[:num_shared] = b'not a jpeg'
  return encoded, _full_decode(encoded), first_idx, second_idx, second_frames


def _reference_crop_resize(decoded, window, size):
  """Independent reference: full decode, NumPy slice, tf.image.resize, round half up."""
  y, x, h, w = (int(v) for v in window)
  crop = decoded[..., y:y + h, x:x + w, :]
  return np.floor(tf.image.resize(crop, [size, size]).numpy().astype(np.float64) + 0.5).astype(np.uint8)


class DecodeTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(True, False)
  def test_decode_window_equals_full_decode_then_slice(self, chroma_downsampling):
    encoded = _encode(_textured_frames(2, 40, 56), chroma_downsampling)
    decoded = _full_decode(encoded)
    rng = np.random.default_rng(1)
    windows = [[0, 0, 40, 56], [0, 0, 1, 1], [39, 55, 1, 1], [17, 16, 16, 16], [3, 1, 37, 55]]
    for _ in range(25):
      y, x = rng.integers(0, 39), rng.integers(0, 55)
      windows.append([y, x, rng.integers(1, 40 - y + 1), rng.integers(1, 56 - x + 1)])
    for window in windows:
      y, x, h, w = window
      # Resizing to the window's own size is the identity, so this checks the decoded pixels bit for bit.
      got = video_augment.decode_crop_resize(encoded, tf.constant(window), (h, w))
      self.assertAllEqual(got, decoded[:, y:y + h, x:x + w], msg=f'window {window}')

  def test_decode_crop_resize_matches_reference_consistent_and_per_frame(self):
    encoded = _encode(_textured_frames(3, 40, 56))
    decoded = _full_decode(encoded)
    window = tf.constant([5, 9, 30, 20])
    self.assertAllEqual(video_augment.decode_crop_resize(encoded, window, 16),
                        _reference_crop_resize(decoded, window, 16))
    windows = tf.constant([[5, 9, 30, 20], [0, 0, 40, 56], [10, 30, 12, 26]])
    got = video_augment.decode_crop_resize(encoded, windows, 16)
    for i in range(3):
      self.assertAllEqual(got[i], _reference_crop_resize(decoded[i], windows[i], 16))

  def test_decode_crop_resize_in_dataset_map(self):
    encoded = _encode(_textured_frames(3, 40, 56))
    window = tf.constant([5, 9, 30, 20])
    dataset = tf.data.Dataset.from_tensors(encoded).map(
        lambda e: video_augment.decode_crop_resize(e, window, 16))
    self.assertAllEqual(next(iter(dataset)), _reference_crop_resize(_full_decode(encoded), window, 16))

  @parameterized.parameters(0, 1, 3, 4)
  def test_pair_decoding_with_shared_frames(self, num_shared):
    encoded = _encode(_textured_frames(8, 40, 56))
    decoded = _full_decode(encoded)
    first_idx = np.arange(4)
    second_idx = np.arange(4 - num_shared, 8 - num_shared)
    second_frames = tf.gather(encoded, second_idx).numpy()
    # The shared frames of the second clip must come from the first clip's decode: make them undecodable, so
    # the test also proves every shared frame is decoded once.
    second_frames[:num_shared] = b'not a jpeg'
    first_window, second_window = tf.constant([2, 3, 30, 40]), tf.constant([10, 12, 28, 44])
    first, second = video_augment.decode_crop_resize_pair(
        tf.gather(encoded, first_idx), tf.constant(second_frames), num_shared, first_window, second_window, 16)
    self.assertAllEqual(first, _reference_crop_resize(decoded[first_idx], first_window, 16))
    self.assertAllEqual(second, _reference_crop_resize(decoded[second_idx], second_window, 16))

  @parameterized.parameters(0, 1, 4)
  def test_pair_windows_without_resize_are_the_decoded_pixels(self, num_shared):
    """decode_crop_pair (the resize left to the accelerator): each clip's window of the full decode, exactly."""
    encoded, decoded, first_idx, second_idx, second_frames = _pair_with_unreadable_shared_frames(num_shared)
    first, second = video_augment.decode_crop_pair(
        tf.gather(encoded, first_idx), tf.constant(second_frames), num_shared, [2, 3, 30, 40], [10, 12, 28, 44])
    self.assertAllEqual(first, decoded[first_idx, 2:32, 3:43])
    self.assertAllEqual(second, decoded[second_idx, 10:38, 12:56])

  def test_clip_windows_without_resize_are_the_decoded_pixels(self):
    encoded = _encode(_textured_frames(8, 40, 56))
    decoded = _full_decode(encoded)
    indices = np.array([[0, 2, 4], [2, 4, 6], [1, 3, 5]])
    clips = video_augment.decode_crop_clips(encoded, indices, [[0, 0, 40, 56], [5, 6, 7, 8], [1, 50, 39, 6]])
    self.assertAllEqual(clips[0], decoded[indices[0]])
    self.assertAllEqual(clips[1], decoded[indices[1], 5:12, 6:14])
    self.assertAllEqual(clips[2], decoded[indices[2], 1:40, 50:56])

  @parameterized.parameters(0, 2, 4)
  def test_pair_decoding_with_per_frame_windows(self, num_shared):
    encoded, decoded, first_idx, second_idx, second_frames = _pair_with_unreadable_shared_frames(num_shared)
    first_windows = tf.constant([[2, 3, 30, 40], [0, 0, 40, 56], [20, 30, 8, 8], [5, 5, 10, 30]])
    second_windows = tf.constant([[10, 12, 28, 44], [1, 1, 5, 5], [0, 20, 40, 36], [5, 5, 10, 30]])
    fn = tf.function(video_augment.decode_crop_resize_pair)  # Graph mode, as inside tf.data.
    first, second = fn(tf.gather(encoded, first_idx), tf.constant(second_frames), tf.constant(num_shared),
                       first_windows, second_windows, 16)
    for k in range(4):
      self.assertAllEqual(first[k], _reference_crop_resize(decoded[first_idx[k]], first_windows[k], 16))
      self.assertAllEqual(second[k], _reference_crop_resize(decoded[second_idx[k]], second_windows[k], 16))

  def test_pair_rejects_mixed_window_ranks(self):
    encoded = _encode(_textured_frames(2, 16, 16))
    with self.assertRaisesRegex(ValueError, 'both be'):
      video_augment.decode_crop_resize_pair(encoded, encoded, 0, tf.constant([0, 0, 8, 8]),
                                            tf.constant([[0, 0, 8, 8]] * 2), 8)


class CropWindowTest(tf.test.TestCase, parameterized.TestCase):

  def test_sampled_windows_respect_ranges(self):
    height, width = 256, 340
    windows = video_augment.sample_crop_windows([height, width], 300, seed=7).numpy()
    y, x, h, w = windows.T
    self.assertTrue(np.all((y >= 0) & (x >= 0) & (y + h <= height) & (x + w <= width)))
    area = h * w / (height * width)
    # Integer rounding of the box sides moves area and aspect ratio slightly outside the real-valued ranges.
    self.assertTrue(np.all((area >= 0.3 - 0.01) & (area <= 1.0)))
    self.assertTrue(np.all((w / h >= 0.5 - 0.02) & (w / h <= 2.0 + 0.02)))
    self.assertGreater(len({tuple(v) for v in windows}), 250)  # Independent draws, not one shared window.
    self.assertGreater(area.std(), 0.1)

  def test_seeded_window_is_reproducible(self):
    self.assertAllEqual(video_augment.sample_crop_window([256, 340], seed=3),
                        video_augment.sample_crop_window([256, 340], seed=3))

  def test_impossible_ranges_fall_back_to_whole_frame(self):
    window = video_augment.sample_crop_window([64, 64], area_range=(0.9, 1.0), aspect_ratio_range=(8.0, 9.0),
                                              seed=1)
    self.assertAllEqual(window, [0, 0, 64, 64])

  def test_sample_crop_window_in_dataset_map(self):
    dataset = tf.data.Dataset.from_tensors(tf.constant([30, 50])).map(video_augment.sample_crop_window)
    y, x, h, w = next(iter(dataset)).numpy()
    self.assertTrue(0 <= y and y + h <= 30 and 0 <= x and x + w <= 50)

  @parameterized.parameters(
      ([256, 340], None, [0, 42, 256, 256]),
      ([340, 256], None, [42, 0, 256, 256]),
      ([256, 340], [224, 224], [16, 58, 224, 224]),
  )
  def test_central_crop_window(self, shape, crop, expected):
    self.assertAllEqual(video_augment.central_crop_window(shape, crop), expected)

  @parameterized.parameters(
      ([224, 298], None, [[0, 0, 224, 224], [0, 37, 224, 224], [0, 74, 224, 224]]),
      ([298, 224], None, [[0, 0, 224, 224], [37, 0, 224, 224], [74, 0, 224, 224]]),
      ([256, 340], 224, [[16, 0, 224, 224], [16, 58, 224, 224], [16, 116, 224, 224]]),
      ([64, 64], None, [[0, 0, 64, 64]] * 3),
  )
  def test_three_crop_windows(self, shape, crop_size, expected):
    self.assertAllEqual(video_augment.three_crop_windows(shape, crop_size), expected)

  def test_crop_window_union(self):
    self.assertAllEqual(video_augment.crop_window_union([2, 3, 10, 10], [5, 1, 20, 4]), [2, 1, 23, 12])


class ResizeAndFlipTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(([4, 256, 340, 3], [4, 224, 298, 3]), ([2, 340, 256, 3], [2, 298, 224, 3]))
  def test_resize_short_side(self, shape, expected):
    frames = tf.zeros(shape, tf.uint8)
    resized = video_augment.resize_short_side(frames, 224)
    self.assertAllEqual(resized.shape, expected)
    self.assertEqual(resized.dtype, tf.uint8)
    self.assertEqual(video_augment.resize_short_side(tf.zeros(shape), 224).dtype, tf.float32)

  def test_flip_whole_clip_and_per_frame(self):
    frames = np.arange(3 * 2 * 4 * 1).reshape([3, 2, 4, 1])
    self.assertAllEqual(video_augment.flip_left_right_clip(frames, True), frames[:, :, ::-1])
    self.assertAllEqual(video_augment.flip_left_right_clip(frames, False), frames)
    per_frame = video_augment.flip_left_right_clip(frames, [True, False, True])
    self.assertAllEqual(per_frame, np.stack([frames[0, :, ::-1], frames[1], frames[2, :, ::-1]]))
    dataset = tf.data.Dataset.from_tensors(frames).map(lambda f: video_augment.flip_left_right_clip(f, True))
    self.assertAllEqual(next(iter(dataset)), frames[:, :, ::-1])


if __name__ == '__main__':
  tf.test.main()
