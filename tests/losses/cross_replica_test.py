"""Tests for official_cvrl.losses.cross_replica: values, offsets and gradients of the replica all-gather."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.losses import cross_replica

_DEVICES = ['/cpu:0', '/cpu:1']


def _fresh_collective_key_base():
  """Gives the next strategy created in this process collective keys no earlier strategy used.

  Every strategy instance numbers its collective groups/instances from its class's `_collective_key_base`; two
  instances with the same base issue colliding keys, and the runtime then aborts all collectives of the process
  ("Shape mismatch in the collective instance ..."). TensorFlow's own `strategy_combinations` bumps the base the
  same way between sub-tests.
  """
  # pylint: disable=protected-access
  classes = (tf.distribute.MirroredStrategy, tf.distribute.MultiWorkerMirroredStrategy)
  base = max(cls._collective_key_base for cls in classes) + 100000
  for cls in classes:
    cls._collective_key_base = base
  # pylint: enable=protected-access


def two_replica_strategy(test_case, kind):
  """Returns a 2-replica strategy on the two logical CPUs from tests/conftest.py, or skips the test."""
  if len(tf.config.list_logical_devices('CPU')) < 2:
    test_case.skipTest('needs 2 logical CPU devices (configured by tests/conftest.py before TensorFlow initialises '
                       'its devices); run with pytest from the repository root.')
  _fresh_collective_key_base()
  if kind == 'mirrored':
    strategy = tf.distribute.MirroredStrategy(_DEVICES)
  else:
    # MultiWorkerMirroredStrategy cannot start several workers inside one test process; the local-devices variant
    # (used by TensorFlow's own tests) runs the same ReplicaContext code over CollectiveAllReduce collective ops.
    # pylint: disable-next=protected-access
    strategy = tf.distribute.MultiWorkerMirroredStrategy._from_local_devices(_DEVICES)
  _fresh_collective_key_base()  # Also protects strategies created later by code that does not bump the base.
  return strategy


class GatherFromReplicasTest(tf.test.TestCase, parameterized.TestCase):

  def test_without_strategy_returns_input_and_zero_offset(self):
    x = tf.reshape(tf.range(6, dtype=tf.float32), [3, 2])
    for fn in (cross_replica.gather_from_replicas,
               tf.function(cross_replica.gather_from_replicas),
               tf.function(cross_replica.gather_from_replicas, jit_compile=True)):
      gathered, offset = fn(x)
      self.assertAllEqual(gathered, x)
      self.assertEqual(int(offset), 0)

  def test_cross_replica_context_returns_input(self):
    strategy = two_replica_strategy(self, 'mirrored')
    x = tf.ones([3, 2])
    with strategy.scope():  # Cross-replica context: `x` already is the whole batch.
      gathered, offset = cross_replica.gather_from_replicas(x)
    self.assertAllEqual(gathered, x)
    self.assertEqual(int(offset), 0)

  def test_scalar_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'rank >= 1'):
      cross_replica.gather_from_replicas(tf.constant(1.0))

  @parameterized.named_parameters(('mirrored', 'mirrored'), ('multi_worker_collectives', 'multi_worker'))
  def test_values_and_offsets_with_uneven_local_batches(self, kind):
    strategy = two_replica_strategy(self, kind)
    x = tf.reshape(tf.range(10, dtype=tf.float32), [5, 2])
    # Replica 0 holds rows 0-1, replica 1 rows 2-4 (as in a final partial batch).
    local = strategy.experimental_distribute_values_from_function(
        lambda ctx: x[:2] if ctx.replica_id_in_sync_group == 0 else x[2:])

    @tf.function
    def run(values):
      return strategy.run(cross_replica.gather_from_replicas, args=(values,))

    gathered, offsets = run(local)
    for replica_gathered in strategy.experimental_local_results(gathered):
      self.assertAllEqual(replica_gathered, x)
    self.assertEqual([int(o) for o in strategy.experimental_local_results(offsets)], [0, 2])

  @parameterized.named_parameters(
      ('mirrored_graph', 'mirrored', True),
      ('mirrored_eager', 'mirrored', False),
      ('multi_worker_collectives_graph', 'multi_worker', True),
  )
  def test_gradient_sums_every_replicas_use_of_local_rows(self, kind, use_tf_function):
    """Replica r has loss_r = sum(w_r * gathered**2); d(sum_r loss_r)/dx = 2 * x * (w_0 + w_1) on x's own rows."""
    strategy = two_replica_strategy(self, kind)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(4, 3)).astype(np.float32)
    weights = rng.normal(size=(2, 4, 3)).astype(np.float32)  # Different per replica.
    local = strategy.experimental_distribute_values_from_function(
        lambda ctx: tf.constant(x[2 * ctx.replica_id_in_sync_group:2 * ctx.replica_id_in_sync_group + 2]))

    def replica_fn(local_x):
      replica_id = tf.distribute.get_replica_context().replica_id_in_sync_group
      w = tf.gather(tf.constant(weights), replica_id)
      with tf.GradientTape() as tape:
        tape.watch(local_x)
        gathered, _ = cross_replica.gather_from_replicas(local_x)
        loss = tf.reduce_sum(w * gathered**2)
      return tape.gradient(loss, local_x)

    def run(values):
      return strategy.run(replica_fn, args=(values,))

    if use_tf_function:
      run = tf.function(run)
    grads = np.concatenate([g.numpy() for g in strategy.experimental_local_results(run(local))])
    self.assertAllClose(grads, 2.0 * x * weights.sum(axis=0), rtol=1e-6, atol=1e-6)


if __name__ == '__main__':
  tf.test.main()
