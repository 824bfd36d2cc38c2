"""The SimCLR-style MLP projection head of CVRL (paper Sec. 3.2 and Table 6).

The contrastive loss is computed on the head's output; evaluation discards the head and uses the encoder's
pooled features, which keep more information than the loss-shaped projection.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras

from official.modeling import tf_utils


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class ProjectionHead(tf_keras.layers.Layer):
  """num_hidden_layers x [Dense(hidden_dim) -> BatchNorm -> activation], then Dense(output_dim)."""

  def __init__(self,
               num_hidden_layers: int = 3,
               hidden_dim: int = 2048,
               output_dim: int = 128,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               bias_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Initializes the head.

    Args:
      num_hidden_layers: Number of hidden layers; 0 makes the head a single linear layer.
      hidden_dim: Width of every hidden layer (already scaled by the backbone width, see the config).
      output_dim: Dimension of the projection.
      activation: Name of the activation after each hidden batch norm.
      use_sync_bn: Whether batch norm statistics are synchronised across replicas (global BN).
      norm_momentum: Batch norm moving-average momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Initializer of the Dense kernels.
      kernel_regularizer: Regularizer of the Dense kernels.
      bias_regularizer: Regularizer of the output layer's bias.
      **kwargs: Passed to `tf_keras.layers.Layer`.

    Raises:
      ValueError: If a size is out of range.
    """
    super().__init__(**kwargs)
    if num_hidden_layers < 0:
      raise ValueError('task.model.projection_head.num_hidden_layers must be >= 0, got '
                       f'{num_hidden_layers}.')
    if hidden_dim < 1 or output_dim < 1:
      raise ValueError('task.model.projection_head.hidden_dim and output_dim must be >= 1, got '
                       f'{hidden_dim} and {output_dim}.')
    self._config_dict = {
        'num_hidden_layers': num_hidden_layers,
        'hidden_dim': hidden_dim,
        'output_dim': output_dim,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
        'bias_regularizer': bias_regularizer,
    }
    self._hidden_dense = []
    self._hidden_norms = []
    for i in range(num_hidden_layers):
      # No bias: the batch norm's beta that follows plays its role.
      self._hidden_dense.append(
          tf_keras.layers.Dense(
              hidden_dim,
              use_bias=False,
              kernel_initializer=tf_utils.clone_initializer(kernel_initializer),
              kernel_regularizer=kernel_regularizer,
              name=f'hidden_{i}'))
      self._hidden_norms.append(
          tf_keras.layers.BatchNormalization(
              momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn, name=f'hidden_bn_{i}'))
    self._activation_fn = tf_utils.get_activation(activation)
    self._output_dense = tf_keras.layers.Dense(
        output_dim,
        kernel_initializer=tf_utils.clone_initializer(kernel_initializer),
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer,
        name='output')

  @property
  def num_hidden_layers(self) -> int:
    return len(self._hidden_dense)

  def call(self, inputs: tf.Tensor, training=None) -> tf.Tensor:
    """Projects pooled features.

    Args:
      inputs: Pooled video features `[batch, num_features]`.
      training: Whether batch norm uses batch statistics (and updates its moving averages).

    Returns:
      The projection `[batch, output_dim]`, not normalised (the loss normalises).
    """
    x = inputs
    for dense, norm in zip(self._hidden_dense, self._hidden_norms):
      x = self._activation_fn(norm(dense(x), training=training))
    return self._output_dense(x)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), **self._config_dict}
