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

With rho > 2 clips per video (`multi_view_contrastive_loss`, after Feichtenhofer et al., CVPR 2021), every clip is
an anchor whose positives are the other clips of its video; rho = 2 is the loss above.

Note on scale: Model Garden's `video_ssl` (and SimCLR's code) return `loss_a + loss_b`, the sum of the two view
directions' means, i.e. twice this value; learning rates tuned with that code see half the gradient here.
"""
from typing import Dict, Sequence, Tuple

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
  return multi_view_contrastive_loss([projections_1, projections_2], temperature, gather_across_replicas)


def multi_view_contrastive_loss(views: Sequence[tf.Tensor],
                                temperature: float = 0.1,
                                gather_across_replicas: bool = True) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
  """InfoNCE with rho >= 2 clips per video: every clip an anchor, the other rho - 1 clips of its video positives.

  With views v = 0..rho-1 of n local videos (rho * N clips in the global batch), anchor a has positives P(a), the
  rho - 1 other clips of its video, and its loss is the mean over them of the two-view loss, each positive
  contrasted against every other clip (other positives included, as SimCLR with several views):

    L_a = 1 / (rho - 1) * sum_{p in P(a)} -log( exp(sim(z_a, z_p) / tau) / sum_{k != a} exp(sim(z_a, z_k) / tau) ).

  The result is the mean of L_a over this replica's rho * n anchors. rho = 2 is exactly `contrastive_loss` (the
  same computation, so the same bits). Replicas, dtypes and scaling work as described in the module docstring.

  Args:
    views: rho >= 2 tensors `[local_batch, dim]`; row i of every view is a clip of video i.
    temperature: tau > 0.
    gather_across_replicas: negatives from the global batch (True) or this replica's clips only.

  Returns:
    loss: float32 scalar, this replica's mean of L_a (divide by `num_replicas_in_sync` before the gradient).
    metrics: 'contrastive_accuracy' (fraction of anchors whose most similar candidate is one of their positives)
      and 'contrastive_entropy' (mean entropy in nats of the softmax over the rho * global_batch - 1 candidates).

  Raises:
    ValueError: fewer than two views, views that are not rank 2 or differ in static shape, or temperature <= 0.
  """
  views = [tf.convert_to_tensor(view) for view in views]
  if len(views) < 2:
    raise ValueError(f'multi_view_contrastive_loss needs at least 2 views per video; got {len(views)}.')
  if any(view.shape.rank != 2 for view in views):
    raise ValueError('contrastive_loss expects projections of shape [local_batch, dim]; got shapes '
                     f'{" and ".join(str(view.shape) for view in views)}.')
  if not all(view.shape.is_compatible_with(views[0].shape) for view in views[1:]):
    raise ValueError('contrastive_loss expects all views to have the same shape (row i of each is a clip of '
                     f'video i); got {" and ".join(str(view.shape) for view in views)}.')
  if isinstance(temperature, (int, float)) and temperature <= 0:
    raise ValueError(f'contrastive_loss temperature must be > 0; got {temperature}.')

  # Local clips as [view 0 rows; view 1 rows; ...]: anchor a in [0, rho * n) has its positives at
  # (a + s * n) mod (rho * n) for s = 1..rho-1.
  num_views = len(views)
  local_batch = tf.shape(views[0])[0]
  embeddings = tf.concat(views, axis=0)  # [rho * local_batch, dim]
  embeddings = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=-1)

  if gather_across_replicas:
    # One gather for all views: the global layout is [replica 0: v0, v1, ...; replica 1: v0, v1, ...; ...], and
    # the loss only needs to know where this replica's block starts.
    candidates, offset = cross_replica.gather_from_replicas(embeddings)  # [rho * global_batch, dim]
  else:
    candidates, offset = embeddings, tf.constant(0, tf.int32)

  logits = tf.matmul(embeddings, candidates, transpose_b=True) / tf.cast(temperature, tf.float32)
  # logits: [rho * local_batch, rho * global_batch].
  num_anchors = num_views * local_batch
  anchor_index = tf.range(num_anchors, dtype=tf.int32)
  self_column = offset + anchor_index
  positive_columns = [offset + (anchor_index + shift * local_batch) % num_anchors for shift in range(1, num_views)]

  is_self = tf.one_hot(self_column, tf.shape(candidates)[0], on_value=True, off_value=False)
  logits = tf.where(is_self, tf.constant(_SELF_SIMILARITY_LOGIT, tf.float32), logits)

  per_positive_loss = [tf.nn.sparse_softmax_cross_entropy_with_logits(labels=column, logits=logits)
                       for column in positive_columns]
  # One positive (rho = 2): no sum and no division, so the two-view loss is reproduced bit for bit.
  per_anchor_loss = (per_positive_loss[0] if num_views == 2
                     else tf.add_n(per_positive_loss) / float(num_views - 1))
  loss = tf.reduce_mean(per_anchor_loss)

  # Metrics are for monitoring only; keep them out of the gradient.
  logits = tf.stop_gradient(logits)
  best = tf.argmax(logits, axis=1, output_type=tf.int32)
  correct = tf.reduce_any(tf.stack([tf.equal(best, column) for column in positive_columns]), axis=0)
  log_probs = tf.nn.log_softmax(logits, axis=1)
  entropy = -tf.reduce_sum(tf.exp(log_probs) * log_probs, axis=1)
  metrics = {
      'contrastive_accuracy': tf.reduce_mean(tf.cast(correct, tf.float32)),
      'contrastive_entropy': tf.reduce_mean(entropy),
  }
  return loss, metrics
