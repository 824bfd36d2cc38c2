"""Tests for contrastive.multi_view_contrastive_loss (rho >= 2 clips per video) against float64 NumPy."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.losses import contrastive
from tests.losses.cross_replica_test import two_replica_strategy


def _reference(views, tau):
  """The multi-positive loss written out anchor by anchor in float64: (loss, accuracy, entropy)."""
  num_views, n = len(views), views[0].shape[0]
  z = np.concatenate(views).astype(np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  video = np.tile(np.arange(n), num_views)  # Clip a belongs to video a mod n.
  losses, correct, entropies = [], [], []
  for a in range(len(z)):
    others = [k for k in range(len(z)) if k != a]
    positives = [k for k in others if video[k] == video[a]]
    sim = {k: float(z[a] @ z[k]) / tau for k in others}
    log_denominator = np.log(sum(np.exp(sim[k]) for k in others))
    losses.append(np.mean([log_denominator - sim[p] for p in positives]))
    probs = np.array([np.exp(sim[k] - log_denominator) for k in others])
    entropies.append(-np.sum(probs * np.log(probs)))
    correct.append(max(others, key=lambda k: sim[k]) in positives)
  return np.mean(losses), np.mean(correct), np.mean(entropies)


def _views(num_views, n, dim, seed):
  rng = np.random.default_rng(seed)
  return [(rng.normal(size=(n, dim)) * rng.uniform(0.5, 3.0, size=(n, 1))).astype(np.float32)
          for _ in range(num_views)]


class MultiViewContrastiveLossTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters((3, 1, 4, 0.1), (3, 4, 6, 0.2), (4, 3, 5, 0.1), (4, 5, 8, 0.5), (6, 2, 3, 1.0))
  def test_value_and_metrics_match_reference(self, num_views, n, dim, tau):
    views = _views(num_views, n, dim, seed=num_views * 10 + n)
    loss, metrics = contrastive.multi_view_contrastive_loss(views, temperature=tau)
    expected_loss, expected_accuracy, expected_entropy = _reference(views, tau)
    self.assertAllClose(loss, expected_loss, rtol=1e-5, atol=1e-5)
    self.assertAllClose(metrics['contrastive_accuracy'], expected_accuracy, atol=1e-6)
    self.assertAllClose(metrics['contrastive_entropy'], expected_entropy, rtol=1e-5, atol=1e-5)

  def test_gradients_match_finite_differences(self):
    views = _views(3, 3, 4, seed=5)
    tau, step = 0.2, 1e-6
    variables = [tf.Variable(v) for v in views]
    with tf.GradientTape() as tape:
      loss, _ = contrastive.multi_view_contrastive_loss(variables, temperature=tau)
    grads = tape.gradient(loss, variables)
    for which in range(3):
      expected = np.zeros(views[which].shape)
      for index in np.ndindex(*expected.shape):
        plus = [v.astype(np.float64) for v in views]
        minus = [v.astype(np.float64) for v in views]
        plus[which][index] += step
        minus[which][index] -= step
        expected[index] = (_reference(plus, tau)[0] - _reference(minus, tau)[0]) / (2 * step)
      self.assertAllClose(grads[which], expected, rtol=1e-3, atol=1e-4)

  def test_two_views_are_bitwise_the_pair_loss(self):
    z1, z2 = _views(2, 5, 8, seed=3)
    loss, metrics = contrastive.multi_view_contrastive_loss([z1, z2], temperature=0.1)
    pair_loss, pair_metrics = contrastive.contrastive_loss(z1, z2, temperature=0.1)
    self.assertEqual(loss.numpy().tobytes(), pair_loss.numpy().tobytes())
    for key in metrics:
      self.assertEqual(metrics[key].numpy().tobytes(), pair_metrics[key].numpy().tobytes())

  def test_identical_clips_of_a_video_rank_first(self):
    # All clips of a video equal, videos orthogonal: every anchor's top candidate is a positive.
    base = np.eye(4, dtype=np.float32)
    _, metrics = contrastive.multi_view_contrastive_loss([base, base, base], temperature=0.1)
    self.assertAllClose(metrics['contrastive_accuracy'], 1.0)

  def test_xla_compiled_matches_reference(self):
    views = _views(3, 4, 6, seed=8)
    fn = tf.function(lambda *v: contrastive.multi_view_contrastive_loss(list(v), temperature=0.1)[0],
                     jit_compile=True)
    self.assertAllClose(fn(*views), _reference(views, 0.1)[0], rtol=1e-5, atol=1e-5)

  def test_fewer_than_two_views_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'at least 2 views'):
      contrastive.multi_view_contrastive_loss([tf.ones([2, 3])])

  def test_replica_losses_sum_to_single_device_loss(self):
    strategy = two_replica_strategy(self, 'mirrored')
    views = _views(3, 6, 5, seed=13)
    dataset = tf.data.Dataset.from_tensor_slices(tuple(views)).batch(6)
    distributed = next(iter(strategy.experimental_distribute_dataset(dataset)))

    def replica_fn(*local_views):
      loss, _ = contrastive.multi_view_contrastive_loss(list(local_views), temperature=0.1)
      return loss / tf.distribute.get_replica_context().num_replicas_in_sync

    scaled = tf.function(lambda v: strategy.run(replica_fn, args=v))(distributed)
    self.assertAllClose(strategy.reduce(tf.distribute.ReduceOp.SUM, scaled, axis=None), _reference(views, 0.1)[0],
                        rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  tf.test.main()
