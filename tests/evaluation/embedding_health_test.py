"""Tests for evaluation/embedding_health.py on constructed batches with known values and a float64 reference."""
import numpy as np
import tensorflow as tf

from official_cvrl.evaluation import embedding_health


def _reference(z1, z2):
  """Float64 NumPy version of the four definitions in the module docstring."""
  def unit(z):
    return z / np.linalg.norm(z, axis=1, keepdims=True)
  z1, z2 = unit(np.asarray(z1, np.float64)), unit(np.asarray(z2, np.float64))
  both = np.concatenate([z1, z2])
  s = np.linalg.svd(both, compute_uv=False)
  p = s / s.sum()
  p = p[p > 0]
  squared = ((both[:, None] - both[None]) ** 2).sum(-1)
  off = ~np.eye(len(both), dtype=bool)
  return {
      'embedding_std': both.std(axis=0).mean(),
      'effective_rank': np.exp(-(p * np.log(p)).sum()),
      'alignment': ((z1 - z2) ** 2).sum(-1).mean(),
      'uniformity': np.log(np.exp(-2.0 * squared[off]).mean()),
  }


class EmbeddingHealthTest(tf.test.TestCase):

  def test_collapsed_batch(self):
    z = np.tile([[0.3, -1.2, 0.5, 2.0]], (6, 1))
    got = embedding_health.health_metrics(z, z)
    self.assertAllClose(got['embedding_std'], 0.0, atol=1e-6)
    self.assertAllClose(got['effective_rank'], 1.0, atol=1e-5)
    self.assertAllClose(got['alignment'], 0.0, atol=1e-6)
    self.assertAllClose(got['uniformity'], 0.0, atol=1e-6)

  def test_orthonormal_batch(self):
    # Clips 0..3 are e_0..e_3, their positives e_4..e_7: eight orthonormal points in d = 8.
    eye = np.eye(8)
    got = embedding_health.health_metrics(eye[:4], eye[4:])
    self.assertAllClose(got['effective_rank'], 8.0, atol=1e-4)
    self.assertAllClose(got['embedding_std'], np.sqrt(1 / 8 - 1 / 64), atol=1e-6)
    self.assertAllClose(got['alignment'], 2.0, atol=1e-6)
    self.assertAllClose(got['uniformity'], -4.0, atol=1e-5)

  def test_opposite_positives_and_scale_invariance(self):
    z = np.random.default_rng(0).normal(size=(5, 16))
    self.assertAllClose(embedding_health.alignment(z, -3.0 * z), 4.0, atol=1e-5)
    self.assertAllClose(embedding_health.effective_rank(7.0 * z), embedding_health.effective_rank(z), rtol=1e-5)

  def test_random_batches_match_float64_reference(self):
    rng = np.random.default_rng(1)
    for dim in (4, 32, 128):
      z1 = rng.normal(size=(12, dim))
      z2 = z1 + rng.normal(scale=0.5, size=(12, dim))
      got = embedding_health.health_metrics(tf.constant(z1, tf.float32), tf.constant(z2, tf.bfloat16))
      want = _reference(z1, tf.constant(z2, tf.bfloat16).numpy().astype(np.float64))
      for name, value in want.items():
        self.assertAllClose(got[name], value, rtol=1e-4, atol=1e-5, msg=f'{name}, d={dim}')

  def test_isotropic_gaussian_batch_is_healthy(self):
    # Many points spread over the sphere: std ~ 1/sqrt(d), rank close to d, uniformity near its large-n limit.
    dim = 16
    z = np.random.default_rng(2).normal(size=(4000, dim))
    got = embedding_health.health_metrics(z[:2000], z[2000:])
    self.assertAllClose(got['embedding_std'], 1 / np.sqrt(dim), rtol=0.03)
    self.assertGreater(float(got['effective_rank']), 0.97 * dim)
    self.assertAllClose(got['alignment'], 2.0, atol=0.05)  # Independent points: E||a - b||^2 = 2.

  def test_works_inside_tf_function(self):
    fn = tf.function(embedding_health.health_metrics)
    z = tf.random.stateless_normal([6, 8], seed=[1, 2])
    eager = embedding_health.health_metrics(z, z[::-1])
    graph = fn(z, z[::-1])
    for name in eager:
      self.assertAllClose(graph[name], eager[name], rtol=1e-5)


if __name__ == '__main__':
  tf.test.main()
