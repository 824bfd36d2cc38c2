"""Tests of the CVRL temporal interval sampler against the analytic P(t) of Fig. 3 and exact frame indices."""
from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf

from official_cvrl.ops import temporal_sampling

_NUM_DRAWS = 20000
# Fixed seeds make every draw deterministic; a chi-square p-value below this means the sampler disagrees with
# the analytic distribution (the chance of a correct sampler failing is 1e-4 per test).
_MIN_P_VALUE = 1e-4


def _analytic_interval_probabilities(max_interval, distribution, power):
  """Float64 P(t) written independently from the docstring's definition."""
  t = np.arange(max_interval + 1, dtype=np.float64)
  if distribution == 'decreasing':
    weights = (max_interval + 1.0) ** power - t ** power
  elif distribution == 'uniform':
    weights = np.ones_like(t)
  else:
    weights = t ** power + 1.0
  return weights / weights.sum()


def _draw_pairs(num_frames, clip_span, distribution, power, temporal_augmentation=True):
  """_NUM_DRAWS start pairs, each with its own fixed seed, drawn inside tf.data (graph mode)."""
  dataset = tf.data.Dataset.range(_NUM_DRAWS).map(
      lambda i: temporal_sampling.sample_pair_start_indices(
          num_frames, clip_span, distribution, power, temporal_augmentation=temporal_augmentation,
          seed=tf.stack([i, tf.constant(1234, tf.int64)])),
      num_parallel_calls=tf.data.AUTOTUNE)
  return next(iter(dataset.batch(_NUM_DRAWS))).numpy()


def _chi_square_p_value(samples, probabilities):
  observed = np.bincount(samples, minlength=len(probabilities))
  if len(observed) != len(probabilities):
    raise AssertionError(f'samples outside the support: max {samples.max()} >= {len(probabilities)}')
  return stats.chisquare(observed, probabilities * len(samples)).pvalue


class IntervalWeightsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      ('decreasing', 1.0, 3, [4, 3, 2, 1]),
      ('decreasing', 2.0, 2, [9, 8, 5]),
      ('decreasing', 0.5, 3, [2 - 0, 2 - 1, 2 - 2 ** 0.5, 2 - 3 ** 0.5]),
      ('uniform', 1.0, 3, [1, 1, 1, 1]),
      ('increasing', 1.0, 3, [1, 2, 3, 4]),
      ('increasing', 2.0, 2, [1, 2, 5]),
  )
  def test_exact_values(self, distribution, power, max_interval, weights):
    expected = np.array(weights, np.float64) / np.sum(weights)
    self.assertAllClose(temporal_sampling.interval_weights(max_interval, distribution, power), expected,
                        atol=1e-7)

  @parameterized.parameters('decreasing', 'uniform', 'increasing')
  def test_zero_max_interval_is_certain(self, distribution):
    self.assertAllEqual(temporal_sampling.interval_weights(0, distribution, 1.0), [1.0])

  def test_decreasing_keeps_longest_interval_possible(self):
    weights = temporal_sampling.interval_weights(219, 'decreasing', 2.0).numpy()
    self.assertGreater(weights[-1], 0.0)
    self.assertTrue(np.all(np.diff(weights) < 0))

  def test_tensor_max_interval_in_graph(self):
    fn = tf.function(lambda m: temporal_sampling.interval_weights(m, 'decreasing', 1.0))
    self.assertAllClose(fn(tf.constant(3)), [0.4, 0.3, 0.2, 0.1])

  def test_rejects_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'one of'):
      temporal_sampling.interval_weights(3, 'linear')
    with self.assertRaisesRegex(ValueError, 'power must be > 0'):
      temporal_sampling.interval_weights(3, 'decreasing', 0.0)
    with self.assertRaisesRegex(ValueError, 'max_interval must be >= 0'):
      temporal_sampling.interval_weights(-1)


class SamplePairStartIndicesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(('decreasing', 1.0), ('decreasing', 2.0), ('uniform', 1.0), ('increasing', 1.0),
                            ('increasing', 2.0))
  def test_interval_and_start_match_analytic_distribution(self, distribution, power):
    num_frames, clip_span = 50, 31  # max_interval = 19: 20 interval bins.
    max_interval = num_frames - clip_span
    starts = _draw_pairs(num_frames, clip_span, distribution, power)
    intervals = starts[:, 1] - starts[:, 0]
    self.assertTrue(np.all(starts[:, 0] >= 0))
    self.assertTrue(np.all(starts[:, 1] <= max_interval))
    p_interval = _analytic_interval_probabilities(max_interval, distribution, power)
    self.assertGreater(_chi_square_p_value(intervals, p_interval), _MIN_P_VALUE)
    # Given t, the first start is uniform on {0, ..., max_interval - t}; marginalise over t.
    p_first = np.zeros(max_interval + 1)
    for t, p_t in enumerate(p_interval):
      p_first[:max_interval - t + 1] += p_t / (max_interval - t + 1)
    self.assertGreater(_chi_square_p_value(starts[:, 0], p_first), _MIN_P_VALUE)
    # A second, cruder check readable at a glance: the empirical CDF of t is within 0.015 of the analytic one.
    empirical_cdf = np.cumsum(np.bincount(intervals, minlength=max_interval + 1)) / len(intervals)
    self.assertLess(np.max(np.abs(empirical_cdf - np.cumsum(p_interval))), 0.015)

  def test_without_temporal_augmentation_both_clips_start_together_uniformly(self):
    starts = _draw_pairs(40, 31, 'decreasing', 1.0, temporal_augmentation=False)
    self.assertAllEqual(starts[:, 0], starts[:, 1])
    self.assertGreater(_chi_square_p_value(starts[:, 0], np.full(10, 0.1)), _MIN_P_VALUE)

  @parameterized.parameters(0, 1, 30, 31)
  def test_videos_not_longer_than_a_clip_start_at_zero(self, num_frames):
    self.assertAllEqual(temporal_sampling.sample_pair_start_indices(num_frames, 31, seed=3), [0, 0])

  def test_same_seed_same_pair_and_none_seed_varies(self):
    first = temporal_sampling.sample_pair_start_indices(250, 31, seed=[5, 6])
    self.assertAllEqual(first, temporal_sampling.sample_pair_start_indices(250, 31, seed=[5, 6]))
    draws = {tuple(temporal_sampling.sample_pair_start_indices(250, 31).numpy()) for _ in range(20)}
    self.assertGreater(len(draws), 1)

  def test_runs_in_dataset_map_without_seed(self):
    dataset = tf.data.Dataset.from_tensor_slices([100, 5, 250]).map(
        lambda n: temporal_sampling.sample_pair_start_indices(n, 31))
    for n, starts in zip([100, 5, 250], dataset):
      self.assertBetween(int(starts[0]), 0, max(n - 31, 0))
      self.assertBetween(int(starts[1]), int(starts[0]), max(n - 31, 0))


class FrameIndicesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (5, 4, 2, 100, [5, 7, 9, 11]),
      (0, 3, 1, 3, [0, 1, 2]),
      (3, 8, 2, 10, [3, 5, 7, 9, 1, 3, 5, 7]),  # A short video loops.
      (0, 5, 2, 1, [0, 0, 0, 0, 0]),
  )
  def test_exact_indices_eager_and_in_dataset(self, start, num_clip_frames, stride, num_frames, expected):
    self.assertAllEqual(temporal_sampling.clip_frame_indices(start, num_clip_frames, stride, num_frames),
                        expected)
    dataset = tf.data.Dataset.from_tensors((start, num_frames)).map(
        lambda s, n: temporal_sampling.clip_frame_indices(s, num_clip_frames, stride, n))
    self.assertAllEqual(next(iter(dataset)), expected)

  def test_empty_video_raises_naming_the_video(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'no frames(.|\n)*videos/empty.mp4'):
      temporal_sampling.clip_frame_indices(0, 4, 2, 0, video_id=tf.constant('videos/empty.mp4'))
    dataset = tf.data.Dataset.from_tensors(tf.constant(0)).map(
        lambda n: temporal_sampling.clip_frame_indices(0, 4, 2, n, video_id=tf.constant('videos/empty.mp4')))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'videos/empty.mp4'):
      next(iter(dataset))

  def test_shared_frame_count_matches_set_intersection(self):
    num_clip_frames, stride = 4, 3
    for num_frames in (7, 40):  # 7 frames loops the clips.
      for first in range(0, 12):
        for interval in range(0, 16):
          a = (first + np.arange(num_clip_frames) * stride) % num_frames
          b = (first + interval + np.arange(num_clip_frames) * stride) % num_frames
          shared = int(temporal_sampling.shared_frame_count(interval, num_clip_frames, stride))
          # The contract: the first clip's tail equals the second clip's head over `shared` frames.
          self.assertAllEqual(a[num_clip_frames - shared:], b[:shared])
          if num_frames >= first + interval + (num_clip_frames - 1) * stride + 1:  # No looping.
            self.assertEqual(shared, len(set(a) & set(b)))

  @parameterized.parameters(
      (100, 31, 10, [0, 7, 15, 23, 30, 38, 46, 53, 61, 69]),
      (100, 31, 1, [34]),
      (31, 31, 3, [0, 0, 0]),
      (10, 31, 2, [0, 0]),
      (250, 63, 2, [0, 187]),
  )
  def test_evenly_spaced_clip_starts(self, num_frames, clip_span, num_clips, expected):
    self.assertAllEqual(temporal_sampling.evenly_spaced_clip_starts(num_frames, clip_span, num_clips), expected)

  def test_evenly_spaced_clip_starts_rejects_zero_clips(self):
    with self.assertRaisesRegex(ValueError, 'num_clips'):
      temporal_sampling.evenly_spaced_clip_starts(100, 31, 0)


if __name__ == '__main__':
  tf.test.main()
