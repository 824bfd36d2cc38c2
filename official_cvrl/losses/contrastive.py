"""InfoNCE (NT-Xent) contrastive loss of CVRL (Qian et al., CVPR 2021, Eq. 1) with global-batch negatives.

For a global batch of N videos with two augmented clips each (2N embeddings z), every clip i is an anchor:

  L_i = -log( exp(sim(z_i, z'_i) / tau) / sum_{k != i} exp(sim(z_i, z_k) / tau) ),

with sim the cosine similarity, z'_i the other clip of the same video and k over all 2N clips of the GLOBAL batch.
The loss is the mean of L_i over the 2N anchors.

Data parallelism: each replica holds n = N / num_replicas videos. It computes L_i for its own 2n anchors against all
2N candidates (gathered with `cross_replica.gather_from_replicas`) and returns their mean. The training step divides
this by `num_replicas_in_sync` and the optimizer sums gradients over replicas, so the effective loss is exactly the
single-device loss on the global batch, and the gradient reaching another replica's embeddings through the
all-gather is the derivative of that total (see `cross_replica.py`).

Note on scale: Model Garden's `video_ssl` (and SimCLR's code) return `loss_a + loss_b`, the sum of the two view
directions' means, i.e. twice this value; learning rates tuned with that code see half the gradient here.
"""
from typing import Dict, Tuple

import tensorflow as tf

from official_cvrl.losses import cross_replica

# Logit given to an anchor's similarity with itself. Large and finite (not -inf) so that softmax, its gradient and
# the entropy metric (p * log p = 0 * -1e9) stay NaN-free; representable in float32, where all of this is computed.
_SELF_SIMILARITY_LOGIT = -1e9


def contrastive_loss(projections_1: tf.Tensor,
                     projections_2: tf.Tensor,
                     temperature: float = 0.1,
                     gather_across_replicas: bool = True) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """Computes this replica's share of the CVRL InfoNCE loss (paper Eq. 1).

  Row i of `projections_1` and row i of `projections_2` are the two views of the same video (a positive pair);
  every other clip of the (global) batch is a negative. Inputs of any float dtype (e.g. bfloat16 under mixed
  precision) are cast to float32, so the normalisation, the logits and the softmax are float32.

  Args:
    projections_1: `[local_batch, dim]` projection-head outputs of the first views.
    projections_2: `[local_batch, dim]` projection-head outputs of the second views.
    temperature: tau > 0 in Eq. 1 (the paper uses 0.1).
    gather_across_replicas: if True (the paper's setting), negatives come from the global batch of all replicas in
      sync; if False, each replica contrasts only against its own `2 * local_batch` clips.

  Returns:
    loss: float32 scalar, mean of L_i over this replica's `2 * local_batch` anchors, each contrasted against the
      `2 * global_batch` candidates (self excluded). Divide by `num_replicas_in_sync` before taking gradients.
    metrics: dict of float32 scalars, means over this replica's anchors:
      'contrastive_accuracy': fraction of anchors whose positive has the highest similarity among the
        `2 * global_batch - 1` candidates.
      'contrastive_entropy': mean entropy (nats) of the softmax over those candidates.

  Raises:
    ValueError: if the inputs are not rank 2, their static shapes differ, or `temperature` is not positive.
  """
  projections_1 = tf.convert_to_tensor(projections_1)
  projections_2 = tf.convert_to_tensor(projections_2)
  if projections_1.shape.rank != 2 or projections_2.shape.rank != 2:
    raise ValueError('contrastive_loss expects projections of shape [local_batch, dim]; got shapes '
                     f'{projections_1.shape} and {projections_2.shape}.')
  if not projections_1.shape.is_compatible_with(projections_2.shape):
    raise ValueError('contrastive_loss expects both views to have the same shape (row i of each is a positive '
                     f'pair); got {projections_1.shape} and {projections_2.shape}.')
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f'contrastive_loss temperature must be > 0; got {temperature}.')

  # Local clips as [view 1 rows; view 2 rows]: anchor a in [0, 2n) has its positive at (a + n) mod 2n.
  local_batch = tf.shape(projections_1)[0]
  embeddings = tf.concat([projections_1, projections_2], axis=0)  # [2 * local_batch, dim]
  embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)

  if gather_across_replicas:
    # One gather for both views: the global layout is [replica 0: v1, v2; replica 1: v1, v2; ...], and the loss
    # only needs to know where this replica's block starts.
    candidates, offset = cross_replica.gather_from_replicas(embeddings)  # [2 * global_batch, dim]
  else:
    candidates, offset = embeddings, tf.constant(0, tf.int32)

  logits = tf.matmul(embeddings, candidates, transpose_b=True) / tf.cast(temperature, tf.float32)
  # logits: [2 * local_batch, 2 * global_batch].
  num_anchors = 2 * local_batch
  anchor_index = tf.range(num_anchors, dtype=tf.int32)
  self_column = offset + anchor_index
  positive_column = offset + (anchor_index + local_batch) % num_anchors

  is_self = tf.one_hot(self_column, tf.shape(candidates)[0], on_value=True, off_value=False)
  logits = tf.where(is_self, tf.constant(_SELF_SIMILARITY_LOGIT, tf.float32), logits)

  per_anchor_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=positive_column, logits=logits)
  loss = tf.reduce_mean(per_anchor_loss)

  # Metrics are for monitoring only; keep them out of the gradient.
  logits = tf.stop_gradient(logits)
  correct = tf.equal(tf.argmax(logits, axis=1, output_type=tf.int32), positive_column)
  log_probs = tf.nn.log_softmax(logits, axis=1)
  entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=1)
  metrics = {
      'contrastive_accuracy': tf.reduce_mean(tf.cast(correct, tf.float32)),
      'contrastive_entropy': tf.reduce_mean(entropy),
  }
  return loss, metrics
