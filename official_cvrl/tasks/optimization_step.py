"""The gradient step every task shares: per-replica loss -> scaled gradients -> optimizer update.

Model Garden's optimizers sum gradients across replicas, and each of our tasks returns the mean loss over its
replica's examples, so the loss is divided by the replica count before differentiation: the summed gradient is
then the gradient of the global mean. Mixed float16 wraps the optimizer in a LossScaleOptimizer, whose scaling
happens here too.
"""
from typing import Any, Callable, Tuple

import tensorflow as tf
import tf_keras


def minimize(loss_fn: Callable[[], Tuple[tf.Tensor, Any]], model: tf_keras.Model,
             optimizer: tf_keras.optimizers.Optimizer) -> Tuple[tf.Tensor, Any]:
  """Runs `loss_fn` under a gradient tape and applies its gradients to `model.trainable_variables`.

  Args:
    loss_fn: computes the forward pass; returns (per-replica mean loss, anything to pass through).
    model: the model whose trainable variables are updated.
    optimizer: the optimizer (possibly a LossScaleOptimizer).

  Returns:
    The unscaled loss and the pass-through value of `loss_fn`.
  """
  num_replicas = tf.distribute.get_strategy().num_replicas_in_sync
  loss_scaling = isinstance(optimizer, tf_keras.mixed_precision.LossScaleOptimizer)
  with tf.GradientTape() as tape:
    loss, extras = loss_fn()
    scaled_loss = loss / num_replicas
    if loss_scaling:
      scaled_loss = optimizer.get_scaled_loss(scaled_loss)
  variables = model.trainable_variables
  grads = tape.gradient(scaled_loss, variables)
  if loss_scaling:
    grads = optimizer.get_unscaled_gradients(grads)
  optimizer.apply_gradients(list(zip(grads, variables)))
  return loss, extras
