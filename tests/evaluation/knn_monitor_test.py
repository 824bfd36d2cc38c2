"""Tests for evaluation/knn_monitor.py against a brute-force float64 loop."""
import numpy as np
import tensorflow as tf

from official_cvrl.evaluation import knn_monitor


def _brute_force(features, labels, k, tau):
  features = np.asarray(features, np.float64)
  keep = labels >= 0
  features, labels = features[keep], labels[keep]
  z = features / np.linalg.norm(features, axis=1, keepdims=True)
  correct = []
  for i in range(len(z)):
    others = [j for j in range(len(z)) if j != i]
    # Stable order: higher similarity first, lower index on ties.
    ranked = sorted(others, key=lambda j: (-float(z[i] @ z[j]), j))[:k]
    votes = {}
    for j in ranked:
      votes[labels[j]] = votes.get(labels[j], 0.0) + np.exp(float(z[i] @ z[j]) / tau)
    best = max(sorted(votes), key=lambda c: votes[c])  # Ties: lower class (max keeps the first maximum).
    correct.append(best == labels[i])
  return float(np.mean(correct))


class WeightedKnnTest(tf.test.TestCase):

  def test_matches_brute_force(self):
    rng = np.random.default_rng(0)
    for k, tau in ((1, 0.07), (5, 0.1), (20, 0.5), (200, 1.0)):
      labels = rng.integers(0, 4, 60)
      features = rng.normal(size=(60, 8)) + 1.5 * np.eye(8)[labels]
      self.assertAlmostEqual(knn_monitor.weighted_knn_top1(features, labels, k, tau),
                             _brute_force(features, labels, k, tau), places=12)

  def test_separable_classes_and_unlabelled_videos(self):
    features = np.concatenate([np.tile([1.0, 0.0], (5, 1)), np.tile([0.0, 1.0], (5, 1))])
    features += np.random.default_rng(1).normal(scale=0.01, size=features.shape)
    labels = np.array([0] * 5 + [1] * 5)
    self.assertEqual(knn_monitor.weighted_knn_top1(features, labels, k=3), 1.0)
    # Unlabelled videos (-1) are neither queries nor neighbours, even when they sit right on a class.
    with_unlabelled = np.concatenate([features, np.tile([1.0, 0.0], (20, 1))])
    self.assertEqual(knn_monitor.weighted_knn_top1(with_unlabelled, np.concatenate([labels, [-1] * 20]), k=3), 1.0)

  def test_leave_one_out(self):
    # Every video is alone in its class: without leave-one-out it would find itself and score 1.0.
    features = np.eye(4) + 0.1
    self.assertEqual(knn_monitor.weighted_knn_top1(features, np.arange(4), k=1), 0.0)

  def test_too_few_labelled_videos_and_bad_arguments(self):
    self.assertTrue(np.isnan(knn_monitor.weighted_knn_top1(np.ones([3, 2]), np.array([0, -1, -1]))))
    with self.assertRaisesRegex(ValueError, 'temperature'):
      knn_monitor.weighted_knn_top1(np.ones([3, 2]), np.zeros(3), temperature=0.0)


if __name__ == '__main__':
  tf.test.main()
