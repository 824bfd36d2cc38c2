"""The two CVRL models: the pretraining encoder + projection head, and the classifier used for evaluation.

Both wrap the same backbone (any Model Garden-style 3D backbone returning an endpoint dict; CVRL uses `R3D`) and
pool its last endpoint over time and space, so the backbone's variables, exposed as `checkpoint_items`, move from
a pretraining checkpoint into a classifier unchanged.

The models are Keras functional models with one input named 'image': call them with a clip tensor
`[batch, T, H, W, 3]` or with a feature dict holding it under 'image' (Model Garden's task convention).
Under a mixed-precision policy the backbone and heads compute in the low-precision dtype, but pooling,
normalisation and every output are float32, which the contrastive loss and the classification loss need.
"""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official_cvrl.modeling.heads import projection_head as projection_head_lib

layers = tf_keras.layers


def _pool_last_endpoint(endpoints: Mapping[str, tf.Tensor]) -> tf.Tensor:
  """Global-average-pools the deepest endpoint `[batch, T', H', W', C]` into float32 `[batch, C]`."""
  last = endpoints[max(endpoints, key=int)]
  # A float32 layer casts its input first, so the mean over T'H'W' positions accumulates in float32.
  return layers.GlobalAveragePooling3D(dtype='float32', name='global_pool')(last)


def _as_float32(x: tf.Tensor, name: str) -> tf.Tensor:
  return layers.Activation('linear', dtype='float32', name=name)(x)


class BackboneModel(tf_keras.Model):
  """A functional model built around a video backbone: exposes it for partial restore and serialises by config.

  Subclasses set `self._backbone` and `self._config_dict` (the constructor arguments) before building.
  """

  @property
  def backbone(self) -> tf_keras.Model:
    return self._backbone

  @property
  def checkpoint_items(self) -> Mapping[str, tf_keras.Model]:
    """Items also written at the checkpoint root, so another model can restore the backbone alone."""
    return dict(backbone=self.backbone)

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class CVRLModel(BackboneModel):
  """Backbone -> global average pool -> projection head; outputs {'features', 'projection'}."""

  def __init__(self,
               backbone: tf_keras.Model,
               input_specs: layers.InputSpec = layers.InputSpec(shape=[None, None, None, None, 3]),
               num_hidden_layers: int = 3,
               hidden_dim: int = 2048,
               output_dim: int = 128,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Builds the pretraining model.

    Args:
      backbone: A 3D backbone returning a dict of endpoints keyed by level ('2'..'5').
      input_specs: Spec of the input clips `[batch * 2, T, H, W, 3]` (two views per video in pretraining).
      num_hidden_layers: Hidden layers of the projection head.
      hidden_dim: Width of the projection head's hidden layers (already width-scaled).
      output_dim: Dimension of the projection.
      activation: Activation of the projection head's hidden layers.
      use_sync_bn: Whether the projection head's batch norms synchronise across replicas.
      norm_momentum: Batch norm moving-average momentum of the head.
      norm_epsilon: Batch norm epsilon of the head.
      kernel_regularizer: Regularizer of the head's Dense kernels.
      **kwargs: Passed to `tf_keras.Model`.
    """
    self._self_setattr_tracking = False
    self._config_dict = {
        'backbone': backbone,
        'input_specs': input_specs,
        'num_hidden_layers': num_hidden_layers,
        'hidden_dim': hidden_dim,
        'output_dim': output_dim,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_regularizer': kernel_regularizer,
    }
    self._backbone = backbone
    head = projection_head_lib.ProjectionHead(
        num_hidden_layers=num_hidden_layers,
        hidden_dim=hidden_dim,
        output_dim=output_dim,
        activation=activation,
        use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon,
        kernel_regularizer=kernel_regularizer,
        name='projection_head')
    self._projection_head = head

    inputs = tf_keras.Input(shape=input_specs.shape[1:], batch_size=input_specs.shape[0], name='image')
    features = _pool_last_endpoint(backbone(inputs))
    outputs = {
        'features': _as_float32(features, name='features'),
        'projection': _as_float32(head(features), name='projection'),
    }
    super().__init__(inputs=inputs, outputs=outputs, **kwargs)
    self._self_setattr_tracking = True

  @property
  def projection_head(self) -> projection_head_lib.ProjectionHead:
    return self._projection_head


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class VideoClassifier(BackboneModel):
  """Backbone -> global average pool -> [L2 normalise] -> [standardise] -> dropout -> Dense; float32 logits."""

  def __init__(self,
               backbone: tf_keras.Model,
               num_classes: int,
               input_specs: layers.InputSpec = layers.InputSpec(shape=[None, None, None, None, 3]),
               dropout_rate: float = 0.0,
               normalize_features: bool = False,
               standardize_features: bool = False,
               kernel_initializer: Any = None,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               bias_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Builds the classifier.

    Args:
      backbone: A 3D backbone returning a dict of endpoints keyed by level ('2'..'5').
      num_classes: Number of output logits.
      input_specs: Spec of the input clips `[batch, T, H, W, 3]`.
      dropout_rate: Dropout rate on the (normalised) pooled features, in [0, 1).
      normalize_features: Whether to L2-normalise the pooled features (linear evaluation protocol), which
        makes the linear classifier's learning rate independent of the feature scale.
      standardize_features: Whether to standardise each feature with a batch norm that has no scale or offset
        (as MAE's linear probe). At inference it is a fixed affine map, so the classifier stays linear in the
        features; it only conditions the optimisation, which matters for features that all point in nearly
        the same direction (a random backbone's), so short probes compare backbones fairly.
      kernel_initializer: Initializer of the classifier kernel; None means a normal distribution with stddev
        0.01 (SimCLR's linear-evaluation head), so training starts from near-uniform predictions.
      kernel_regularizer: Regularizer of the classifier kernel.
      bias_regularizer: Regularizer of the classifier bias.
      **kwargs: Passed to `tf_keras.Model`.

    Raises:
      ValueError: If num_classes or dropout_rate is out of range.
    """
    if num_classes < 1:
      raise ValueError(f'VideoClassifier needs num_classes >= 1 (from the task\'s data config), got {num_classes}.')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'task.model.dropout_rate must be in [0, 1), got {dropout_rate}: a rate of 1 would drop '
                       'every feature.')
    self._self_setattr_tracking = False
    self._config_dict = {
        'backbone': backbone,
        'num_classes': num_classes,
        'input_specs': input_specs,
        'dropout_rate': dropout_rate,
        'normalize_features': normalize_features,
        'standardize_features': standardize_features,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
        'bias_regularizer': bias_regularizer,
    }
    self._backbone = backbone

    inputs = tf_keras.Input(shape=input_specs.shape[1:], batch_size=input_specs.shape[0], name='image')
    x = _pool_last_endpoint(backbone(inputs))
    if normalize_features:
      x = layers.UnitNormalization(axis=-1, dtype='float32', name='l2_normalize')(x)
    if standardize_features:
      x = layers.BatchNormalization(center=False, scale=False, dtype='float32', name='feature_standardization')(x)
    x = layers.Dropout(dropout_rate, name='dropout')(x)
    if kernel_initializer is None:
      kernel_initializer = tf_keras.initializers.RandomNormal(stddev=0.01)
    x = layers.Dense(
        num_classes,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer,
        name='classifier')(x)
    logits = _as_float32(x, name='logits')
    super().__init__(inputs=inputs, outputs=logits, **kwargs)
    self._self_setattr_tracking = True

