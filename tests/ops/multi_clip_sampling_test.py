"""Tests for temporal_sampling.sample_clip_start_indices (rho >= 2 clips) against analytic distributions."""
import itertools

from absl.testing import parameterized
import numpy as np
from scipy import stats
import tensorflow as tf

from official_cvrl.ops import temporal_sampling


def _weights(max_interval, distribution, power):
  """P(t) of Fig. 3 written out in float64 (the constants of `interval_weights`' docstring)."""
  t = np.arange(max_interval + 1, dtype=np.float64)
  if distribution == 'uniform':
    w = np.ones_like(t)
  elif distribution == 'decreasing':
    w = (max_interval + 1.0)**power - t**power
  else:
    w = t**power + 1.0
  return w / w.sum()


def _analytic_gap_law(max_interval, num_gaps, distribution, power):
  """Joint law of the gaps: i.i.d. P(t) conditioned on sum <= max_interval, by enumeration."""
  w = _weights(max_interval, distribution, power)
  law = {}
  for gaps in itertools.product(range(max_interval + 1), repeat=num_gaps):
    if sum(gaps) <= max_interval:
      law[gaps] = np.prod(w[list(gaps)])
  total = sum(law.values())
  return {gaps: p / total for gaps, p in law.items()}


def _draw(num_frames, clip_span, num_clips, distribution, power, num_samples, temporal_augmentation=True):
  dataset = tf.data.Dataset.range(num_samples).map(
      lambda i: temporal_sampling.sample_clip_start_indices(
          num_frames, clip_span, num_clips, distribution, power, temporal_augmentation=temporal_augmentation,
          seed=tf.stack([i, 7])))
  return np.concatenate([batch.numpy() for batch in dataset.batch(4096)])


class SampleClipStartIndicesTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(('decreasing', 1.0, 3), ('uniform', 1.0, 3), ('increasing', 2.0, 3),
                            ('decreasing', 0.5, 4))
  def test_joint_gap_law_matches_conditioned_iid_law(self, distribution, power, num_clips):
    num_frames, clip_span = 13, 5  # max_interval 8: the condition binds often, so it is really tested.
    max_interval = num_frames - clip_span
    starts = _draw(num_frames, clip_span, num_clips, distribution, power, num_samples=20000)
    law = _analytic_gap_law(max_interval, num_clips - 1, distribution, power)
    cells = sorted(law)
    index = {gaps: i for i, gaps in enumerate(cells)}
    observed = np.zeros(len(cells))
    for row in starts:
      observed[index[tuple(np.diff(row))]] += 1
    expected = np.array([law[c] for c in cells]) * len(starts)
    # Pool rare cells so the chi-square approximation holds.
    keep = expected >= 5
    observed_pooled = np.append(observed[keep], observed[~keep].sum())
    expected_pooled = np.append(expected[keep], expected[~keep].sum())
    if expected_pooled[-1] == 0:
      observed_pooled, expected_pooled = observed_pooled[:-1], expected_pooled[:-1]
    self.assertEqual(observed.sum(), len(starts))  # Every drawn gap tuple is a feasible cell of the law.
    _, p_value = stats.chisquare(observed_pooled, expected_pooled)
    self.assertGreater(p_value, 1e-3)

  def test_first_start_is_uniform_given_the_gaps_and_clips_fit(self):
    num_frames, clip_span = 40, 9
    starts = _draw(num_frames, clip_span, 3, 'decreasing', 1.0, num_samples=8000)
    self.assertTrue(np.all(np.diff(starts, axis=1) >= 0))
    self.assertTrue(np.all(starts[:, 0] >= 0))
    self.assertTrue(np.all(starts[:, -1] + clip_span <= num_frames))
    # Given the total gap g, the first start is uniform on 0..max_interval - g: its rank is uniform on [0, 1).
    slack = num_frames - clip_span - (starts[:, -1] - starts[:, 0])
    position = (starts[:, 0] + np.random.default_rng(0).uniform(size=len(starts))) / (slack + 1)
    self.assertGreater(stats.kstest(position, 'uniform').pvalue, 1e-3)

  def test_long_video_gaps_follow_p_of_t(self):
    # A long video: the condition almost never binds, so each gap is distributed as P(t) itself.
    num_frames, clip_span = 200, 31
    max_interval = num_frames - clip_span
    starts = _draw(num_frames, clip_span, 3, 'decreasing', 1.0, num_samples=6000)
    w = _weights(max_interval, 'decreasing', 1.0)
    # Exact marginal of one gap under the condition (P(t) times the chance the other gap still fits).
    cdf_sum = np.cumsum(w)
    marginal = w * cdf_sum[max_interval - np.arange(max_interval + 1)]
    marginal /= marginal.sum()
    for gap in (np.diff(starts, axis=1)[:, 0], np.diff(starts, axis=1)[:, 1]):
      bins = np.linspace(0, max_interval + 1, 11).astype(int)
      observed = np.histogram(gap, bins)[0]
      expected = np.array([marginal[a:b].sum() for a, b in zip(bins[:-1], bins[1:])]) * len(gap)
      self.assertGreater(stats.chisquare(observed, expected).pvalue, 1e-3)

  def test_short_videos_and_no_temporal_augmentation(self):
    # Shorter than a clip: every start is 0 (clip_frame_indices loops the video).
    self.assertAllEqual(temporal_sampling.sample_clip_start_indices(3, 9, 4, seed=1), [0, 0, 0, 0])
    starts = _draw(30, 9, 4, 'decreasing', 1.0, num_samples=500, temporal_augmentation=False)
    self.assertTrue(np.all(starts == starts[:, :1]))
    self.assertGreater(len(np.unique(starts[:, 0])), 10)

  def test_deterministic_given_seed_and_usable_in_graph(self):
    a = temporal_sampling.sample_clip_start_indices(50, 9, 3, seed=[3, 4])
    b = tf.function(temporal_sampling.sample_clip_start_indices, autograph=False)(50, 9, 3, seed=[3, 4])
    self.assertAllEqual(a, b)

  def test_rejects_fewer_than_two_clips(self):
    with self.assertRaisesRegex(ValueError, 'num_clips'):
      temporal_sampling.sample_clip_start_indices(50, 9, 1)


if __name__ == '__main__':
  tf.test.main()
