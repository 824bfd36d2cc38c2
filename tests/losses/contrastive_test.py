"""Tests for official_cvrl.losses.contrastive against a plain float64 NumPy transcription of CVRL Eq. 1."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from official_cvrl.losses import contrastive
from tests.losses.cross_replica_test import two_replica_strategy

# (N videos, embedding dim, temperature). N = 1 is the degenerate batch whose only candidate is the positive.
_CASES = (
    ('n1', 1, 3, 0.1),
    ('n2_tau007', 2, 5, 0.07),
    ('n3', 3, 4, 0.1),
    ('n5_tau05', 5, 8, 0.5),
    ('n4_tau1', 4, 16, 1.0),
)


def _reference(z1, z2, tau):
  """Eq. 1 written out anchor by anchor in float64: returns (loss, accuracy, entropy)."""
  z = np.concatenate([z1, z2]).astype(np.float64)
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  num_clips = z.shape[0]
  n = num_clips // 2
  losses, correct, entropies = [], [], []
  for i in range(num_clips):
    positive = (i + n) % num_clips  # Clip i and clip i + n are the two views of video i.
    others = [k for k in range(num_clips) if k != i]
    sim = {k: float(z[i] @ z[k]) for k in others}
    denominator = sum(np.exp(sim[k] / tau) for k in others)
    losses.append(-np.log(np.exp(sim[positive] / tau) / denominator))
    probs = np.array([np.exp(sim[k] / tau) / denominator for k in others])
    entropies.append(-np.sum(probs * np.log(probs)))
    correct.append(max(others, key=lambda k: sim[k]) == positive)
  return np.mean(losses), np.mean(correct), np.mean(entropies)


def _reference_gradient(z1, z2, tau, step=1e-6):
  """Central finite differences of the float64 reference loss with respect to both inputs."""
  grads = []
  for which in range(2):
    inputs = [z1.astype(np.float64), z2.astype(np.float64)]
    grad = np.zeros_like(inputs[which])
    for index in np.ndindex(*grad.shape):
      plus = [x.copy() for x in inputs]
      minus = [x.copy() for x in inputs]
      plus[which][index] += step
      minus[which][index] -= step
      grad[index] = (_reference(*plus, tau)[0] - _reference(*minus, tau)[0]) / (2 * step)
    grads.append(grad)
  return grads


def _random_projections(n, dim, seed):
  rng = np.random.default_rng(seed)
  # Non-unit norms so that the L2 normalisation inside the loss is exercised.
  scale = rng.uniform(0.5, 3.0, size=(n, 1))
  return ((rng.normal(size=(n, dim)) * scale).astype(np.float32),
          (rng.normal(size=(n, dim)) * scale).astype(np.float32))


class ContrastiveLossTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(*_CASES)
  def test_loss_and_metrics_match_reference(self, n, dim, tau):
    z1, z2 = _random_projections(n, dim, seed=n * 100 + dim)
    loss, metrics = contrastive.contrastive_loss(z1, z2, temperature=tau)
    expected_loss, expected_accuracy, expected_entropy = _reference(z1, z2, tau)
    self.assertEqual(loss.dtype, tf.float32)
    self.assertAllClose(loss, expected_loss, rtol=1e-5, atol=1e-5)
    self.assertAllClose(metrics['contrastive_accuracy'], expected_accuracy, atol=1e-7)
    self.assertAllClose(metrics['contrastive_entropy'], expected_entropy, rtol=1e-5, atol=1e-5)

  @parameterized.named_parameters(*_CASES[1:4])
  def test_gradients_match_finite_differences(self, n, dim, tau):
    z1, z2 = _random_projections(n, dim, seed=n * 7 + dim)
    t1, t2 = tf.constant(z1), tf.constant(z2)
    with tf.GradientTape() as tape:
      tape.watch([t1, t2])
      loss, _ = contrastive.contrastive_loss(t1, t2, temperature=tau)
    grad1, grad2 = tape.gradient(loss, [t1, t2])
    expected1, expected2 = _reference_gradient(z1, z2, tau)
    self.assertAllClose(grad1, expected1, rtol=1e-4, atol=1e-5)
    self.assertAllClose(grad2, expected2, rtol=1e-4, atol=1e-5)

  @parameterized.parameters((2, 0.1), (3, 0.5))
  def test_aligned_orthogonal_pairs_have_closed_form_loss(self, n, tau):
    """Both views = e_i: the positive has sim 1, the 2N - 2 negatives sim 0, so L = log(1 + (2N - 2) e^{-1/tau})."""
    z = np.eye(n, 4, dtype=np.float32)
    loss, metrics = contrastive.contrastive_loss(z, z, temperature=tau)
    self.assertAllClose(loss, np.log1p((2 * n - 2) * np.exp(-1.0 / tau)), rtol=1e-6)
    self.assertEqual(float(metrics['contrastive_accuracy']), 1.0)

  def test_swapped_views_give_zero_accuracy(self):
    """Each video's second view is the first view of the next video: every anchor ranks a negative first."""
    z1 = np.eye(3, 3, dtype=np.float32)
    z2 = np.roll(z1, 1, axis=0)
    _, metrics = contrastive.contrastive_loss(z1, z2)
    self.assertEqual(float(metrics['contrastive_accuracy']), 0.0)

  def test_xla_compiled_matches_reference(self):
    z1, z2 = _random_projections(4, 6, seed=3)
    loss, metrics = tf.function(contrastive.contrastive_loss, jit_compile=True)(z1, z2, 0.1)
    expected_loss, expected_accuracy, expected_entropy = _reference(z1, z2, 0.1)
    self.assertAllClose(loss, expected_loss, rtol=1e-5, atol=1e-5)
    self.assertAllClose(metrics['contrastive_accuracy'], expected_accuracy, atol=1e-7)
    self.assertAllClose(metrics['contrastive_entropy'], expected_entropy, rtol=1e-5, atol=1e-5)

  def test_bfloat16_inputs_are_computed_in_float32(self):
    z1, z2 = _random_projections(3, 8, seed=5)
    b1, b2 = tf.cast(z1, tf.bfloat16), tf.cast(z2, tf.bfloat16)
    with tf.GradientTape() as tape:
      tape.watch([b1, b2])
      loss, _ = contrastive.contrastive_loss(b1, b2, temperature=0.1)
    grad1 = tape.gradient(loss, b1)
    self.assertEqual(loss.dtype, tf.float32)
    # Exact (float32-level) agreement with the reference on the bfloat16-rounded inputs shows no bfloat16 math.
    expected, _, _ = _reference(b1.numpy().astype(np.float64), b2.numpy().astype(np.float64), 0.1)
    self.assertAllClose(loss, expected, rtol=1e-5, atol=1e-5)
    self.assertEqual(grad1.dtype, tf.bfloat16)
    self.assertTrue(np.all(np.isfinite(grad1.numpy().astype(np.float32))))

  def test_local_negatives_equal_global_on_one_device(self):
    z1, z2 = _random_projections(3, 5, seed=11)
    global_loss, _ = contrastive.contrastive_loss(z1, z2, gather_across_replicas=True)
    local_loss, _ = contrastive.contrastive_loss(z1, z2, gather_across_replicas=False)
    self.assertAllClose(global_loss, local_loss, rtol=1e-7)

  @parameterized.named_parameters(
      ('rank', np.zeros((2, 3, 4), np.float32), np.zeros((2, 3, 4), np.float32), 0.1, 'local_batch, dim'),
      ('shape', np.zeros((2, 3), np.float32), np.zeros((3, 3), np.float32), 0.1, 'same shape'),
      ('temperature', np.ones((2, 3), np.float32), np.ones((2, 3), np.float32), 0.0, 'temperature'),
  )
  def test_bad_arguments_are_rejected(self, z1, z2, tau, message):
    with self.assertRaisesRegex(ValueError, message):
      contrastive.contrastive_loss(z1, z2, temperature=tau)


class DistributedContrastiveLossTest(tf.test.TestCase, parameterized.TestCase):
  """Two replicas on two logical CPUs; global batch split into consecutive halves, as the input pipeline does."""

  def _distribute_views(self, strategy, z1, z2):
    dataset = tf.data.Dataset.from_tensor_slices((z1, z2)).batch(z1.shape[0])
    return next(iter(strategy.experimental_distribute_dataset(dataset)))

  @parameterized.named_parameters(('mirrored', 'mirrored'), ('multi_worker_collectives', 'multi_worker'))
  def test_replica_losses_sum_to_single_device_loss(self, kind):
    strategy = two_replica_strategy(self, kind)
    z1, z2 = _random_projections(6, 5, seed=21)
    views = self._distribute_views(strategy, z1, z2)

    def replica_fn(v1, v2):
      loss, metrics = contrastive.contrastive_loss(v1, v2, temperature=0.1)
      local_only, _ = contrastive.contrastive_loss(v1, v2, temperature=0.1, gather_across_replicas=False)
      num_replicas = tf.distribute.get_replica_context().num_replicas_in_sync
      return loss / num_replicas, metrics, local_only

    scaled, metrics, local_only = tf.function(lambda v: strategy.run(replica_fn, args=v))(views)
    expected_loss, expected_accuracy, expected_entropy = _reference(z1, z2, 0.1)
    self.assertAllClose(strategy.reduce(tf.distribute.ReduceOp.SUM, scaled, axis=None), expected_loss,
                        rtol=1e-5, atol=1e-5)
    # Equal local batches: the mean of per-replica metrics is the global metric.
    for key, expected in (('contrastive_accuracy', expected_accuracy), ('contrastive_entropy', expected_entropy)):
      self.assertAllClose(strategy.reduce(tf.distribute.ReduceOp.MEAN, metrics[key], axis=None), expected,
                          rtol=1e-5, atol=1e-5)
    # Without gathering, each replica contrasts only its own 3 videos (rows 0-2, then 3-5).
    for replica, value in enumerate(strategy.experimental_local_results(local_only)):
      rows = slice(3 * replica, 3 * replica + 3)
      self.assertAllClose(value, _reference(z1[rows], z2[rows], 0.1)[0], rtol=1e-5, atol=1e-5)

  def test_mirrored_training_step_equals_single_device_step(self):
    """One SGD step under MirroredStrategy (loss / num_replicas, summed gradients) = one step on one device."""
    strategy = two_replica_strategy(self, 'mirrored')
    rng = np.random.default_rng(7)
    x1 = rng.normal(size=(4, 6)).astype(np.float32)
    x2 = (x1 + 0.5 * rng.normal(size=(4, 6))).astype(np.float32)
    initial_weights = [rng.normal(size=(6, 8)) * 0.5, np.zeros(8), rng.normal(size=(8, 5)) * 0.5, np.zeros(5)]
    initial_weights = [w.astype(np.float32) for w in initial_weights]

    def make_model_and_optimizer():
      model = tf_keras.Sequential([tf_keras.layers.Dense(8, activation='relu'), tf_keras.layers.Dense(5)])
      model.build((None, 6))
      model.set_weights(initial_weights)
      return model, tf_keras.optimizers.SGD(learning_rate=0.5)

    def train_step(model, optimizer, v1, v2):
      with tf.GradientTape() as tape:
        loss, _ = contrastive.contrastive_loss(model(v1), model(v2), temperature=0.1)
        scaled_loss = loss / tf.distribute.get_strategy().num_replicas_in_sync
      grads = tape.gradient(scaled_loss, model.trainable_variables)
      optimizer.apply_gradients(zip(grads, model.trainable_variables))
      return v1

    model, optimizer = make_model_and_optimizer()
    tf.function(train_step)(model, optimizer, tf.constant(x1), tf.constant(x2))
    expected_weights = model.get_weights()

    with strategy.scope():
      dist_model, dist_optimizer = make_model_and_optimizer()
    views = self._distribute_views(strategy, x1, x2)
    seen = tf.function(lambda v: strategy.run(lambda a, b: train_step(dist_model, dist_optimizer, a, b), args=v))(
        views)

    # Each replica got consecutive rows of BOTH views (so positive pairs stay on the same replica, aligned).
    self.assertAllEqual(np.concatenate([s.numpy() for s in strategy.experimental_local_results(seen)]), x1)
    update_size = max(np.abs(e - w).max() for e, w in zip(expected_weights, initial_weights))
    self.assertGreater(update_size, 1e-2)  # The step moved the weights far more than the tolerance below.
    for variable, expected in zip(dist_model.weights, expected_weights):
      for replica_copy in variable.values:
        self.assertAllClose(replica_copy, expected, rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  tf.test.main()
