"""Differentiable all-gather of a per-replica batch across `tf.distribute` replicas.

A contrastive loss needs every replica to see the embeddings of the whole global batch as negatives. This module
wraps `tf.distribute.ReplicaContext.all_gather`, which is implemented for `MirroredStrategy`,
`MultiWorkerMirroredStrategy` (collective ops) and `TPUStrategy` (cross-replica sum), so no XLA-only op such as
`xla.replica_id()` is needed and the same code runs on CPU, GPU and TPU.

Gradients: `ReplicaContext.all_gather` carries its own gradient (TF 2.20,
`tensorflow/python/distribute/distribute_lib.py`): the upstream gradient of the gathered tensor is all-reduced with
SUM and each replica keeps the rows it contributed; the TPU override builds the gather from a one-hot mask times an
all-reduce SUM, whose gradient is the same. Hence the gradient with respect to a replica's local rows is the
derivative of the SUM of all replicas' losses, which is what a data-parallel step needs
(`tests/losses/cross_replica_test.py` checks this numerically under `MirroredStrategy`).
"""
from typing import Tuple

import tensorflow as tf


def gather_from_replicas(tensor: tf.Tensor) -> Tuple[tf.Tensor, tf.Tensor]:
  """Concatenates `tensor` from all replicas in sync along axis 0.

  Replicas are concatenated in order of `replica_id_in_sync_group`. The result is differentiable: the gradient
  that reaches `tensor` on a replica sums the contributions of every replica's use of the gathered rows.

  Outside a multi-replica replica context (no strategy, the default strategy, a single replica, or a
  cross-replica context where `tensor` already holds the whole batch) the tensor is returned unchanged.

  Must be called by every replica, in the same order relative to other collectives (like any all-gather).

  Args:
    tensor: the local rows, `[local_batch, ...]`. Local batch sizes may differ between replicas for
      `MirroredStrategy`/`MultiWorkerMirroredStrategy`; `TPUStrategy` requires identical shapes.

  Returns:
    global_tensor: `[sum of local_batch over replicas, ...]`, identical on every replica.
    replica_offset: int32 scalar, the row of `global_tensor` where this replica's `tensor` starts.
  """
  tensor = tf.convert_to_tensor(tensor)
  if tensor.shape.rank == 0:
    raise ValueError('gather_from_replicas needs a tensor of rank >= 1 (rows are gathered along axis 0); '
                     'got a scalar. Use tf.expand_dims first.')
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return tensor, tf.constant(0, tf.int32)

  global_tensor = context.all_gather(tensor, axis=0)
  # The offset is the number of rows held by lower-numbered replicas. Gathering the local sizes keeps it right
  # when replicas hold different numbers of rows (e.g. a final partial batch under MirroredStrategy). The mask
  # (instead of slicing `sizes[:replica_id]`) keeps every shape static for XLA/TPU.
  sizes = context.all_gather(tf.shape(tensor, out_type=tf.int32)[:1], axis=0)
  replica_id = tf.cast(context.replica_id_in_sync_group, tf.int32)
  lower = tf.range(context.num_replicas_in_sync, dtype=tf.int32) < replica_id
  replica_offset = tf.reduce_sum(tf.where(lower, sizes, tf.zeros_like(sizes)))
  return global_tensor, replica_offset
