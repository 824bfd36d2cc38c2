"""Gradient caching: the contrastive step over a large batch while holding activations for one chunk only.

Gao et al. (2021, "Scaling Deep Contrastive Learning Batch Size under Memory Limited Setup") observe that a
contrastive loss couples the examples only through their embeddings. So the step can be split:

  1. embed every chunk of the replica's batch without a tape (activations freed after each chunk);
  2. compute the loss over all embeddings (negatives still global across replicas) and its gradient with respect
     to the embeddings, d loss / d z, a [batch, dim] tensor;
  3. run every chunk again under a tape and back-propagate its slice of d loss / d z to the weights
     (vector-Jacobian product, `tape.gradient(z_chunk, weights, output_gradients=...)`), summing over chunks.

What it equals: the ordinary step in which batch norm normalises each chunk with that chunk's statistics (ghost
batch norm with a virtual batch of `chunk_size` rows) -- exactly, because both passes see the same inputs (the
augmentation of a chunk is seeded by the step and the chunk index, so pass 2 redraws exactly what pass 1 drew)
and the same weights. With batch norm in inference mode (frozen),
chunks do not interact at all and the result is the unchunked step. Batch norm moving statistics are updated once
per chunk, by pass 1; pass 2's updates are undone. Dropout or other randomness inside the model would differ
between the passes; the CVRL model has none.

Pure TensorFlow, usable under any distribution strategy, in a `tf.function` and with `jit_compile`; chunks are
sliced with static sizes, so the replica batch must have a static size divisible by the chunk size. Each pass is
a `tf.while_loop` over the chunks, so memory does not grow with their number; synchronised batch norm under a
Mirrored-type strategy cannot run in a loop body, and then the chunks are unrolled (`needs_unrolled_chunks`).
"""
from typing import Any, Callable, Dict, List, Optional, Tuple

import tensorflow as tf
import tf_keras


def _batch_norm_statistics(model: tf_keras.Model) -> List[tf.Variable]:
  """The moving mean/variance variables of every batch norm layer (what a training-mode call updates)."""
  return [v for v in model.non_trainable_variables if 'moving_' in v.name]


def needs_unrolled_chunks(model: tf_keras.Model) -> bool:
  """Whether the chunks must be unrolled in the graph instead of looped.

  Synchronised batch norm is a cross-replica reduction; under Mirrored-type strategies that reduction is a
  `merge_call`, which TensorFlow does not allow inside a `tf.while_loop` body (even with one replica). TPUs
  reduce with an op that loops fine, and without a strategy there is nothing to synchronise.
  """
  if not tf.distribute.has_strategy() or isinstance(tf.distribute.get_strategy(), tf.distribute.TPUStrategy):
    return False
  return any(getattr(layer, 'synchronized', False) for layer in model.submodules)


def _for_each_chunk(num_chunks: int, body: Callable[[tf.Tensor, Any], Any], state: Any, unrolled: bool) -> Any:
  """`state = body(index, state)` for every chunk index, strictly one chunk after another.

  Looped (`tf.while_loop`, `parallel_iterations=1`), the graph holds one chunk's ops whatever the number of
  chunks, so its size, the kernels' own buffers (oneDNN scratchpads are per op) and the peak memory stay those
  of one chunk: unrolled, the demo model's peak grew by ~0.1 GB per extra chunk. Unrolled (see
  `needs_unrolled_chunks`), control dependencies on the previous state stop TensorFlow from running the
  independent chunks concurrently, which would hold every chunk's activations at once.
  """
  if not unrolled:
    return tf.while_loop(lambda index, _: index < num_chunks, lambda index, s: (index + 1, body(index, s)),
                         (tf.constant(0), state), parallel_iterations=1)[1]
  for index in range(num_chunks):
    previous = [state.flow] if isinstance(state, tf.TensorArray) else tf.nest.flatten(state)
    with tf.control_dependencies(previous):
      state = body(tf.constant(index), state)
  return state


def chunked_minimize(images: tf.Tensor,
                     model: tf_keras.Model,
                     optimizer: tf_keras.optimizers.Optimizer,
                     loss_from_embeddings: Callable[[tf.Tensor], Tuple[tf.Tensor, Dict[str, Any]]],
                     chunk_size: int,
                     output_key: str = 'projection',
                     preprocess: Optional[Callable[[tf.Tensor, int], tf.Tensor]] = None
                     ) -> Tuple[tf.Tensor, Dict[str, Any]]:
  """One optimizer step with gradient caching (see the module docstring).

  Args:
    images: `[batch, ...]` inputs of this replica: model inputs, or raw inputs for `preprocess`.
    model: returns a dict holding `output_key` `[batch, dim]` for training-mode calls; its `losses` (weight
      regularisation) are added to the objective.
    optimizer: Model Garden optimizer, possibly a LossScaleOptimizer (mixed float16).
    loss_from_embeddings: embeddings `[batch, dim]` -> (per-replica mean loss without regularisation, logs).
    chunk_size: rows per chunk; must divide the static batch size.
    output_key: the model output the loss reads.
    preprocess: optional (chunk of `images`, chunk index) -> model input, e.g. uint8 clips -> augmented float
      clips. It runs in both passes and must give the same result both times (stateless randomness seeded by
      the index), so only one chunk of preprocessed inputs is ever held: at the paper's batch the float32 clips
      of the whole batch would not fit on one accelerator.

  Returns:
    The unscaled per-replica total loss (contrastive + regularisation) and the logs of `loss_from_embeddings`
    with 'regularization_loss' set.

  Raises:
    ValueError: if the batch size is not static or not divisible by `chunk_size`.
  """
  batch = images.shape[0]
  if batch is None or chunk_size < 1 or batch % chunk_size:
    raise ValueError(f'gradient caching needs a static replica batch divisible by the chunk size; got batch '
                     f'{batch} and chunk size {chunk_size}.')
  num_chunks = batch // chunk_size
  # [num_chunks, chunk_size, ...]: indexing it with the loop counter gives a chunk of static shape.
  raw_chunks = tf.reshape(images, [num_chunks, chunk_size] + images.shape[1:].as_list())

  def chunk_inputs(index):
    return preprocess(raw_chunks[index], index) if preprocess is not None else raw_chunks[index]

  num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
  loss_scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)

  unrolled = needs_unrolled_chunks(model)

  # Pass 1: embeddings only; nothing is recorded, so each chunk's activations are freed once it is embedded.
  def embed(index, pieces):
    outputs = model(chunk_inputs(index), training=True)[output_key]
    return pieces.write(index, tf.stop_gradient(tf.cast(outputs, tf.float32)))

  pieces = _for_each_chunk(num_chunks, embed, tf.TensorArray(tf.float32, size=num_chunks), unrolled)
  stacked = pieces.stack()
  embeddings = tf.reshape(stacked, [batch, stacked.shape[-1] if stacked.shape[-1] is not None else -1])

  # The loss and its gradient with respect to the embeddings (through the cross-replica gather, if any).
  with tf.GradientTape() as tape:
    tape.watch(embeddings)
    loss, logs = loss_from_embeddings(embeddings)
    scaled = loss / num_replicas
    if loss_scaling:
      scaled = optimizer.get_scaled_loss(scaled)
  embedding_grads = tf.reshape(tape.gradient(scaled, embeddings), [num_chunks, chunk_size, -1])

  # Pass 2: re-run each chunk under a tape and push its slice of the embedding gradient to the weights. Batch
  # norm statistics were already updated by pass 1: keep them and restore them after this pass.
  statistics = _batch_norm_statistics(model)
  saved = [tf.identity(v) for v in statistics]
  variables = model.trainable_variables

  def backpropagate(index, grads):
    with tf.GradientTape() as tape:
      outputs = tf.cast(model(chunk_inputs(index), training=True)[output_key], tf.float32)
    chunk_grads = tape.gradient(outputs, variables, output_gradients=embedding_grads[index],
                                unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return [g + c for g, c in zip(grads, chunk_grads)]

  with tf.control_dependencies([embedding_grads]):  # Unrolled, chunk 0's pass 2 starts after pass 1.
    zeros = [tf.zeros_like(v) for v in variables]
  grads = _for_each_chunk(num_chunks, backpropagate, zeros, unrolled)
  for variable, value in zip(statistics, saved):
    variable.assign(value)

  # Weight regularisation depends on the weights only.
  with tf.GradientTape() as tape:
    regularization = (tf.add_n([tf.cast(l, tf.float32) for l in model.losses]) if model.losses
                      else tf.constant(0.0))
    scaled_regularization = regularization / num_replicas
    if loss_scaling:
      scaled_regularization = optimizer.get_scaled_loss(scaled_regularization)
  regularization_grads = tape.gradient(scaled_regularization, variables,
                                       unconnected_gradients=tf.UnconnectedGradients.ZERO)
  grads = [g + r for g, r in zip(grads, regularization_grads)]
  if loss_scaling:
    grads = optimizer.get_unscaled_gradients(grads)
  optimizer.apply_gradients(list(zip(grads, variables)))
  logs = dict(logs)
  logs['regularization_loss'] = regularization
  return loss + regularization, logs
