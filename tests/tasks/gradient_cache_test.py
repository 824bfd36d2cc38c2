"""Tests for tasks/gradient_cache.py: the cached step equals ordinary autodiff of the chunked forward pass."""
import numpy as np
import tensorflow as tf
import tf_keras

from official_cvrl.losses import contrastive
from official_cvrl.tasks import gradient_cache
from official_cvrl.tasks import optimization_step
from tests.losses.cross_replica_test import two_replica_strategy

_DIM, _CHUNK = 6, 4


def _model(seed=0):
  """Dense -> BN -> ReLU -> Dense (L2 on the first kernel), returning {'projection': ...} like the CVRL model."""
  tf_keras.utils.set_random_seed(seed)
  inputs = tf_keras.Input([5])
  x = tf_keras.layers.Dense(8, kernel_regularizer=tf_keras.regularizers.l2(1e-3))(inputs)
  x = tf_keras.layers.BatchNormalization(momentum=0.9)(x)
  x = tf_keras.layers.ReLU()(x)
  model = tf_keras.Model(inputs, {'projection': tf_keras.layers.Dense(_DIM)(x)})
  model(tf.zeros([1, 5]), training=False)
  return model


def _copy(model):
  clone = _model()
  clone.set_weights(model.get_weights())
  return clone


def _loss(embeddings):
  return contrastive.multi_view_contrastive_loss(tf.split(embeddings, 2), temperature=0.2)


def _reference_step(images, model, optimizer):
  """Ordinary autodiff of the same objective: every chunk through the model under ONE tape (ghost batch norm)."""
  def loss_fn():
    chunks = tf.split(images, images.shape[0] // _CHUNK)
    embeddings = tf.concat([model(c, training=True)['projection'] for c in chunks], axis=0)
    loss, logs = _loss(embeddings)
    return loss + tf.add_n(model.losses), logs
  return optimization_step.minimize(loss_fn, model, optimizer)


def _ordinary_step(images, model, optimizer):
  """The plain step: the whole batch through the model at once (batch norm over all rows)."""
  def loss_fn():
    loss, logs = _loss(model(images, training=True)['projection'])
    return loss + tf.add_n(model.losses), logs
  return optimization_step.minimize(loss_fn, model, optimizer)


def _images(rows=16, seed=1):
  return tf.constant(np.random.default_rng(seed).normal(size=(rows, 5)), tf.float32)


class GradientCacheTest(tf.test.TestCase):

  def _cached_equals_reference(self, raw, optimizer, preprocess=None):
    """Cached step (with `optimizer`) vs the reference step (plain SGD) on the preprocessed chunks."""
    cached = _model()
    reference = _copy(cached)
    gradient_cache.chunked_minimize(raw, cached, optimizer, _loss, _CHUNK, preprocess=preprocess)
    inputs = raw if preprocess is None else tf.concat(
        [preprocess(c, i) for i, c in enumerate(tf.split(raw, raw.shape[0] // _CHUNK))], axis=0)
    _reference_step(inputs, reference, tf_keras.optimizers.SGD(0.5))
    self._assert_same_state(cached, reference)

  def _assert_same_state(self, a, b, rtol=1e-5, atol=1e-6):
    for va, vb in zip(a.variables, b.variables):
      self.assertAllClose(va, vb, rtol=rtol, atol=atol, msg=va.name)

  def test_equals_autodiff_of_the_chunked_forward_pass(self):
    images = _images()
    cached = _model()
    reference = _copy(cached)
    regularization_before_step = float(tf.add_n(reference.losses))
    loss, logs = gradient_cache.chunked_minimize(
        images, cached, tf_keras.optimizers.SGD(0.5), _loss, _CHUNK)
    expected_loss, _ = _reference_step(images, reference, tf_keras.optimizers.SGD(0.5))
    self.assertAllClose(loss, expected_loss, rtol=1e-6)
    self.assertAllClose(logs['regularization_loss'], regularization_before_step, rtol=1e-6)
    # Weights and batch norm moving statistics (updated once per chunk, pass 2 undone) agree.
    self._assert_same_state(cached, reference)

  def test_preprocess_runs_per_chunk_and_identically_in_both_passes(self):
    # A random per-chunk transform seeded by the chunk index (as the task's augmentation): pass 2 must see what
    # pass 1 saw, or the cached embedding gradient would be pushed through different activations.
    raw = _images()

    def preprocess(chunk, index):
      return chunk * tf.random.stateless_uniform(tf.shape(chunk), seed=[index, 9], minval=0.5, maxval=1.5)

    self._cached_equals_reference(raw, tf_keras.optimizers.SGD(0.5), preprocess=preprocess)

  def test_loss_scale_optimizer_gives_the_same_update(self):
    # Mixed float16 wraps the optimizer: the embedding gradient and the weight gradients are scaled and unscaled.
    optimizer = tf_keras.mixed_precision.LossScaleOptimizer(tf_keras.optimizers.SGD(0.5), dynamic=False,
                                                            initial_scale=1024.0)
    self._cached_equals_reference(_images(), optimizer)

  def test_frozen_batch_norm_equals_the_unchunked_step(self):
    images = _images()
    cached = _model()
    plain = _copy(cached)
    for model in (cached, plain):
      for layer in model.layers:
        if isinstance(layer, tf_keras.layers.BatchNormalization):
          layer.trainable = False  # Inference-mode batch norm: chunks no longer interact.

    loss, _ = gradient_cache.chunked_minimize(images, cached, tf_keras.optimizers.SGD(0.5), _loss, _CHUNK)
    expected_loss, _ = _ordinary_step(images, plain, tf_keras.optimizers.SGD(0.5))
    self.assertAllClose(loss, expected_loss, rtol=1e-6)
    self._assert_same_state(cached, plain)

  def test_one_chunk_is_the_ordinary_step(self):
    images = _images()
    cached = _model()
    plain = _copy(cached)
    gradient_cache.chunked_minimize(images, cached, tf_keras.optimizers.SGD(0.5), _loss, images.shape[0])
    _ordinary_step(images, plain, tf_keras.optimizers.SGD(0.5))
    self._assert_same_state(cached, plain)

  def test_xla_compiled_step(self):
    images = _images()
    cached = _model()
    reference = _copy(cached)
    optimizer = tf_keras.optimizers.SGD(0.5)
    step = tf.function(lambda x: gradient_cache.chunked_minimize(x, cached, optimizer, _loss, _CHUNK)[0],
                       jit_compile=True)
    step(images)
    _reference_step(images, reference, tf_keras.optimizers.SGD(0.5))
    self._assert_same_state(cached, reference, rtol=1e-4, atol=1e-5)

  def test_two_replicas_equal_one_device(self):
    strategy = two_replica_strategy(self, 'mirrored')
    images = _images(rows=16)
    # Replica r holds videos 4r..4r+3: rows [clip 0 of its videos; clip 1 of its videos].
    local = [tf.concat([images[4 * r:4 * r + 4], images[8 + 4 * r:8 + 4 * r + 4]], axis=0) for r in range(2)]
    with strategy.scope():
      cached = _model()
      optimizer = tf_keras.optimizers.SGD(0.5)
    single = _copy(cached)
    distributed = strategy.experimental_distribute_values_from_function(lambda ctx: local[ctx.replica_id_in_sync_group])

    @tf.function
    def step(x):
      return strategy.run(lambda v: gradient_cache.chunked_minimize(v, cached, optimizer, _loss, _CHUNK)[0], (x,))

    step(distributed)

    # One device, same objective: each replica's rows are embedded in chunks of 4 (its clip-0 and clip-1 rows),
    # negatives are global, the loss is the mean over all anchors.
    def single_loss():
      per_replica = [tf.split(tf.concat([single(c, training=True)['projection'] for c in tf.split(x, 2)], 0), 2)
                     for x in local]
      views = [tf.concat([p[v] for p in per_replica], axis=0) for v in range(2)]
      loss, logs = contrastive.multi_view_contrastive_loss(views, temperature=0.2)
      # Each replica adds the regularisation to its share and the shares are averaged: it counts once.
      return loss + tf.add_n(single.losses), logs

    with tf.GradientTape() as tape:
      loss, _ = single_loss()
    grads = tape.gradient(loss, single.trainable_variables)
    tf_keras.optimizers.SGD(0.5).apply_gradients(zip(grads, single.trainable_variables))
    for va, vb in zip(cached.trainable_variables, single.trainable_variables):
      self.assertAllClose(va, vb, rtol=1e-4, atol=1e-5, msg=va.name)

  def test_sync_batch_norm_under_mirrored_unrolls_and_equals_plain_batch_norm(self):
    # Sync BN cannot run in a while loop under MirroredStrategy (merge_call), so its chunks are unrolled. With the
    # same rows on both replicas, synchronised statistics equal per-replica ones: the unrolled sync-BN step must
    # give exactly the looped plain-BN step.
    strategy = two_replica_strategy(self, 'mirrored')
    images = _images(rows=8)

    def build(synchronized):
      with strategy.scope():
        tf_keras.utils.set_random_seed(0)
        inputs = tf_keras.Input([5])
        x = tf_keras.layers.Dense(8)(inputs)
        x = tf_keras.layers.BatchNormalization(momentum=0.9, synchronized=synchronized)(x)
        model = tf_keras.Model(inputs, {'projection': tf_keras.layers.Dense(_DIM)(tf_keras.layers.ReLU()(x))})
        model(tf.zeros([1, 5]), training=False)
        return model, tf_keras.optimizers.SGD(0.5)

    states = []
    for synchronized in (True, False):
      model, optimizer = build(synchronized)
      with strategy.scope():
        self.assertEqual(gradient_cache.needs_unrolled_chunks(model), synchronized)
      distributed = strategy.experimental_distribute_values_from_function(lambda _: images)
      step = tf.function(lambda x, m=model, o=optimizer: strategy.run(
          lambda v: gradient_cache.chunked_minimize(v, m, o, _loss, _CHUNK)[0], (x,)))
      step(distributed)
      states.append([v.numpy() for v in model.variables])
    for synced, plain in zip(*states):
      self.assertAllClose(synced, plain, rtol=1e-5, atol=1e-6)
    self.assertFalse(gradient_cache.needs_unrolled_chunks(build(True)[0]))  # No strategy outside its scope.

  def test_batch_not_divisible_by_chunk_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'divisible by the chunk size'):
      gradient_cache.chunked_minimize(_images(rows=10), _model(), tf_keras.optimizers.SGD(0.1), _loss, 4)


if __name__ == '__main__':
  tf.test.main()
