"""Label-free health metrics of contrastive embeddings: is self-supervised training learning or collapsing?

Without labels, the contrastive accuracy and entropy say how hard the pretext task is, not whether the
representation is degenerate. These four numbers, computed on a batch of L2-normalised embeddings, answer that:

  embedding_std        mean over dimensions of the per-dimension standard deviation across the batch. A
                       collapsed representation (every clip mapped to one point) gives 0; embeddings spread
                       evenly over the unit sphere of d dimensions give about 1 / sqrt(d).
  effective_rank       exp of the entropy of the normalised singular values of the [batch, d] embedding matrix
                       (Roy & Vetterli, 2007; not centred): 1 for a collapsed batch, d for orthonormal rows,
                       in between when the embeddings use only a subspace (dimensional collapse).
  alignment            E ||z - z+||^2 over positive pairs (Wang & Isola, ICML 2020, alpha = 2): 0 when the two
                       clips of a video map to the same point, 4 when to opposite points. Lower is better.
  uniformity           log E exp(-2 ||z_i - z_j||^2) over pairs of distinct clips (Wang & Isola, t = 2): 0 when
                       all points coincide, more negative when they spread over the sphere (-4 for orthonormal
                       points). Lower is better.

Healthy pretraining shows alignment falling while uniformity stays low and the effective rank stays a sizeable
fraction of d; collapse shows as std and rank dropping to ~0 and ~1 with uniformity rising towards 0.

Pure functions of float tensors, no configs. In a data-parallel step they describe this replica's batch.
"""
from typing import Dict

import tensorflow as tf


def _normalized(embeddings: tf.Tensor) -> tf.Tensor:
  return tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)


def embedding_std(embeddings: tf.Tensor) -> tf.Tensor:
  """Mean per-dimension standard deviation (population) of the L2-normalised `[batch, d]` embeddings."""
  return tf.reduce_mean(tf.math.reduce_std(_normalized(embeddings), axis=0))


def effective_rank(embeddings: tf.Tensor) -> tf.Tensor:
  """exp(entropy of the singular values normalised to sum 1) of the L2-normalised `[batch, d]` embeddings."""
  singular_values = tf.linalg.svd(_normalized(embeddings), compute_uv=False)
  p = singular_values / tf.maximum(tf.reduce_sum(singular_values), 1e-12)
  # 0 * log 0 = 0: zero singular values (rank deficiency) contribute nothing.
  entropy = -tf.reduce_sum(tf.where(p > 0, p * tf.math.log(tf.maximum(p, 1e-30)), 0.0))
  return tf.exp(entropy)


def alignment(embeddings_1: tf.Tensor, embeddings_2: tf.Tensor) -> tf.Tensor:
  """Mean squared distance between L2-normalised positive pairs (row i of each input)."""
  difference = _normalized(embeddings_1) - _normalized(embeddings_2)
  return tf.reduce_mean(tf.reduce_sum(tf.square(difference), axis=-1))


def uniformity(embeddings: tf.Tensor, t: float = 2.0) -> tf.Tensor:
  """log of the mean Gaussian potential exp(-t ||z_i - z_j||^2) over ordered pairs i != j (needs batch >= 2)."""
  z = _normalized(embeddings)
  # ||a - b||^2 = 2 - 2 a.b on the unit sphere; clipped at 0 against rounding.
  squared = tf.maximum(2.0 - 2.0 * tf.matmul(z, z, transpose_b=True), 0.0)
  n = tf.shape(z)[0]
  off_diagonal = tf.logical_not(tf.eye(n, dtype=tf.bool))
  potentials = tf.boolean_mask(tf.exp(-t * squared), off_diagonal)
  return tf.math.log(tf.reduce_mean(potentials))


def health_metrics(embeddings_1: tf.Tensor, embeddings_2: tf.Tensor) -> Dict[str, tf.Tensor]:
  """All four metrics for a batch of positive pairs (row i of each input: two clips of video i).

  Args:
    embeddings_1: `[batch, d]` embeddings of the first clips (any float dtype).
    embeddings_2: `[batch, d]` embeddings of the second clips.

  Returns:
    float32 scalars 'embedding_std', 'effective_rank', 'uniformity' (over all 2 * batch clips) and 'alignment'.
  """
  embeddings_1 = tf.cast(embeddings_1, tf.float32)
  embeddings_2 = tf.cast(embeddings_2, tf.float32)
  both = tf.concat([embeddings_1, embeddings_2], axis=0)
  return {
      'embedding_std': embedding_std(both),
      'effective_rank': effective_rank(both),
      'alignment': alignment(embeddings_1, embeddings_2),
      'uniformity': uniformity(both),
  }
