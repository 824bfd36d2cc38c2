"""The CVRL video encoder: a 3D-ResNet (R3D) following the "slow" pathway of SlowFast (paper Sec. 3.2, Table 1).

Layout for a 16x224x224 clip (R3D-50, width 1):

  stem   conv [k_t, 7, 7], 64, stride [s_t, 2, 2]      8 x 112 x 112
  pool   max [1, 3, 3], stride [1, 2, 2]                8 x 56 x 56
  res2   bottleneck [1x1^2, 1x3^2, 1x1^2] x 3           8 x 56 x 56 x 256
  res3   bottleneck [1x1^2, 1x3^2, 1x1^2] x 4           8 x 28 x 28 x 512
  res4   bottleneck [3x1^2, 1x3^2, 1x1^2] x 6           8 x 14 x 14 x 1024
  res5   bottleneck [3x1^2, 1x3^2, 1x1^2] x 3           8 x 7 x 7 x 2048

Only the stem strides in time; res3-res5 halve the spatial size in their first block. The temporal kernel is 1 in
res2/res3 and 3 in the first convolution of every res4/res5 block (SlowFast found early temporal convolutions
hurt). Bottleneck blocks are Model Garden's `BottleneckBlock3D`, so an R3D-50 has exactly the variables of Model
Garden's `ResNet3D` configured this way; R3D-18/34 use `BasicBlock3D` below.

The model returns Model Garden's endpoint dict {'2': res2, ..., '5': res5}, so it also plugs into Model Garden's
`VideoClassificationModel`.
"""
from typing import Any, Dict, Mapping, Optional

import tensorflow as tf
import tf_keras

from official.modeling import hyperparams
from official.modeling import tf_utils
from official.vision.modeling.backbones import factory
from official.vision.modeling.layers import nn_blocks_3d

layers = tf_keras.layers

# model_id -> (block kind, blocks per stage res2..res5).
R3D_SPECS = {
    18: ('basic', (2, 2, 2, 2)),
    34: ('basic', (3, 4, 6, 3)),
    50: ('bottleneck', (3, 4, 6, 3)),
    101: ('bottleneck', (3, 4, 23, 3)),
    152: ('bottleneck', (3, 8, 36, 3)),
    200: ('bottleneck', (3, 24, 36, 3)),
}
_STEM_FILTERS = 64
_STAGE_FILTERS = (64, 128, 256, 512)  # Bottleneck width (output is 4x) or basic-block width, res2..res5.
_STAGE_TEMPORAL_KERNELS = (1, 1, 3, 3)  # Of the first convolution of each block, res2..res5.
_CONFIG_PREFIX = 'task.model.backbone.r3d'


def _batch_norm(use_sync_bn: bool, norm_momentum: float, norm_epsilon: float, name: Optional[str] = None):
  return layers.BatchNormalization(
      axis=-1, momentum=norm_momentum, epsilon=norm_epsilon, synchronized=use_sync_bn, name=name)


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class BasicBlock3D(layers.Layer):
  """A 3D residual basic block: conv [t, 3, 3] -> BN -> act -> conv [1, 3, 3] -> BN, plus shortcut, -> act.

  The temporal kernel sits in the first convolution, as in the bottleneck blocks of Table 1. The shortcut is a
  strided 1x1x1 convolution + BN when the shape changes, the identity otherwise.
  """

  def __init__(self,
               filters: int,
               temporal_kernel_size: int,
               spatial_strides: int = 1,
               spatial_dilation_rate: int = 1,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               bias_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               **kwargs):
    """Initializes the block.

    Args:
      filters: Number of filters of both convolutions and of the output.
      temporal_kernel_size: Temporal kernel size of the first convolution.
      spatial_strides: Spatial stride of the first convolution and of the shortcut.
      spatial_dilation_rate: Spatial dilation of both 3x3 convolutions; needs `spatial_strides` 1.
      kernel_initializer: Initializer of the convolution kernels.
      kernel_regularizer: Regularizer of the convolution kernels.
      bias_regularizer: Regularizer of the biases (the convolutions have none; kept for a uniform signature).
      activation: Name of the activation function.
      use_sync_bn: Whether batch norm statistics are synchronised across replicas.
      norm_momentum: Batch norm moving-average momentum.
      norm_epsilon: Batch norm epsilon.
      **kwargs: Passed to `tf_keras.layers.Layer`.
    """
    super().__init__(**kwargs)
    if spatial_dilation_rate > 1 and spatial_strides > 1:
      raise ValueError('BasicBlock3D cannot both stride and dilate spatially: got spatial_strides='
                       f'{spatial_strides}, spatial_dilation_rate={spatial_dilation_rate}.')
    self._filters = filters
    self._temporal_kernel_size = temporal_kernel_size
    self._spatial_strides = spatial_strides
    self._spatial_dilation_rate = spatial_dilation_rate
    self._kernel_initializer = kernel_initializer
    self._kernel_regularizer = kernel_regularizer
    self._bias_regularizer = bias_regularizer
    self._activation = activation
    self._use_sync_bn = use_sync_bn
    self._norm_momentum = norm_momentum
    self._norm_epsilon = norm_epsilon
    self._activation_fn = tf_utils.get_activation(activation)

  def _conv(self, kernel_size, strides, dilation_rate):
    return layers.Conv3D(
        filters=self._filters,
        kernel_size=kernel_size,
        strides=strides,
        dilation_rate=dilation_rate,
        padding='same',
        use_bias=False,
        kernel_initializer=tf_utils.clone_initializer(self._kernel_initializer),
        kernel_regularizer=self._kernel_regularizer,
        bias_regularizer=self._bias_regularizer)

  def _norm(self):
    return _batch_norm(self._use_sync_bn, self._norm_momentum, self._norm_epsilon)

  def build(self, input_shape):
    in_filters = input_shape[-1]
    # Layers are created only when used, so the variable count is that of the computed graph.
    if in_filters != self._filters or self._spatial_strides != 1:
      self._shortcut_conv = self._conv([1, 1, 1], [1, self._spatial_strides, self._spatial_strides], 1)
      self._shortcut_norm = self._norm()
    else:
      self._shortcut_conv = None
      self._shortcut_norm = None
    dilation = [1, self._spatial_dilation_rate, self._spatial_dilation_rate]
    self._conv_a = self._conv([self._temporal_kernel_size, 3, 3],
                              [1, self._spatial_strides, self._spatial_strides], dilation)
    self._norm_a = self._norm()
    self._conv_b = self._conv([1, 3, 3], [1, 1, 1], dilation)
    self._norm_b = self._norm()
    super().build(input_shape)

  def call(self, inputs, training=None):
    if self._shortcut_conv is not None:
      shortcut = self._shortcut_norm(self._shortcut_conv(inputs), training=training)
    else:
      shortcut = inputs
    x = self._activation_fn(self._norm_a(self._conv_a(inputs), training=training))
    x = self._norm_b(self._conv_b(x), training=training)
    return self._activation_fn(x + shortcut)

  def get_config(self) -> Dict[str, Any]:
    config = {
        'filters': self._filters,
        'temporal_kernel_size': self._temporal_kernel_size,
        'spatial_strides': self._spatial_strides,
        'spatial_dilation_rate': self._spatial_dilation_rate,
        'kernel_initializer': self._kernel_initializer,
        'kernel_regularizer': self._kernel_regularizer,
        'bias_regularizer': self._bias_regularizer,
        'activation': self._activation,
        'use_sync_bn': self._use_sync_bn,
        'norm_momentum': self._norm_momentum,
        'norm_epsilon': self._norm_epsilon,
    }
    return {**super().get_config(), **config}


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class DilatedBottleneckBlock3D(nn_blocks_3d.BottleneckBlock3D):
  """Model Garden's `BottleneckBlock3D` with a spatially dilated 1x3x3 convolution (res5 of detection models).

  The variables keep the parent's names and shapes, so a checkpoint of an undilated backbone restores into a
  dilated one.
  """

  def __init__(self, spatial_dilation_rate: int = 2, **kwargs):
    """Initializes the block.

    Args:
      spatial_dilation_rate: Spatial dilation of the 1x3x3 convolution.
      **kwargs: Arguments of `nn_blocks_3d.BottleneckBlock3D`; `spatial_strides` and `temporal_strides` must
        be 1 (Keras convolutions cannot both stride and dilate).
    """
    super().__init__(**kwargs)
    if self._spatial_strides != 1 or self._temporal_strides != 1:
      raise ValueError('DilatedBottleneckBlock3D needs spatial_strides=1 and temporal_strides=1, got '
                       f'{self._spatial_strides} and {self._temporal_strides}.')
    self._spatial_dilation_rate = spatial_dilation_rate

  def build(self, input_shape):
    super().build(input_shape)
    # The parent created its 1x3x3 convolution unbuilt; Keras reads `dilation_rate` only when building and
    # calling it, so setting it here dilates the convolution while keeping the layer (and so the variable
    # order and checkpoint names) exactly the parent's. Replacing the layer would move it to the end of the
    # tracked sublayers and reorder the block's weights.
    self._spatial_conv.dilation_rate = (1, self._spatial_dilation_rate, self._spatial_dilation_rate)

  def get_config(self) -> Dict[str, Any]:
    return {**super().get_config(), 'spatial_dilation_rate': self._spatial_dilation_rate}


def _scaled(filters: int, width_multiplier: float) -> int:
  return int(round(filters * width_multiplier))


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class R3D(tf_keras.Model):
  """The CVRL 3D-ResNet backbone; outputs the endpoint dict {'2', '3', '4', '5'} of res2..res5 features."""

  def __init__(self,
               model_id: int = 50,
               width_multiplier: float = 1.0,
               stem_conv_temporal_kernel_size: int = 5,
               stem_conv_temporal_stride: int = 2,
               stem_max_pool: bool = True,
               res5_dilation: int = 1,
               input_specs: layers.InputSpec = layers.InputSpec(shape=[None, None, None, None, 3]),
               activation: str = 'relu',
               use_sync_bn: bool = False,
               norm_momentum: float = 0.99,
               norm_epsilon: float = 0.001,
               kernel_initializer: str = 'VarianceScaling',
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               bias_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Builds the backbone.

    Args:
      model_id: Depth, a key of `R3D_SPECS`: 18, 34, 50, 101, 152 or 200.
      width_multiplier: Multiplier of every filter count; `64 * width_multiplier` must be a whole number.
      stem_conv_temporal_kernel_size: Temporal kernel size of the stem convolution.
      stem_conv_temporal_stride: Temporal stride of the stem convolution.
      stem_max_pool: Whether to apply the 1x3x3 spatial-stride-2 max pool after the stem.
      res5_dilation: 1, or 2 for res5 with spatial stride 1 and dilation 2.
      input_specs: Spec of the input clips `[batch, T, H, W, C]`; T, H and W may be None.
      activation: Name of the activation function.
      use_sync_bn: Whether batch norm statistics are synchronised across replicas.
      norm_momentum: Batch norm moving-average momentum.
      norm_epsilon: Batch norm epsilon.
      kernel_initializer: Initializer of the convolution kernels.
      kernel_regularizer: Regularizer of the convolution kernels (e.g. L2 weight decay).
      bias_regularizer: Regularizer of biases (the convolutions have none; kept for Model Garden parity).
      **kwargs: Passed to `tf_keras.Model`.

    Raises:
      ValueError: If a setting is unsupported or the input shape cannot be processed; the message names the
        config key to change.
    """
    if model_id not in R3D_SPECS:
      raise ValueError(f'{_CONFIG_PREFIX}.model_id={model_id} is not supported; use one of '
                       f'{sorted(R3D_SPECS)}.')
    if width_multiplier <= 0 or abs(_STEM_FILTERS * width_multiplier - _scaled(_STEM_FILTERS, width_multiplier)
                                    ) > 1e-6:
      raise ValueError(f'{_CONFIG_PREFIX}.width_multiplier={width_multiplier} must be positive with 64 * '
                       'width_multiplier a whole number (e.g. 0.25, 0.5, 1, 2, 4).')
    if res5_dilation not in (1, 2):
      raise ValueError(f'{_CONFIG_PREFIX}.res5_dilation={res5_dilation} is not supported; use 1 '
                       '(classification) or 2 (res5 at output stride 16, for detection).')
    if stem_conv_temporal_kernel_size < 1 or stem_conv_temporal_stride < 1:
      raise ValueError(f'{_CONFIG_PREFIX}.stem_conv_temporal_kernel_size and stem_conv_temporal_stride must be '
                       f'>= 1, got {stem_conv_temporal_kernel_size} and {stem_conv_temporal_stride}.')
    _check_input_shape(input_specs.shape, stem_max_pool=stem_max_pool, res5_dilation=res5_dilation)

    self._config_dict = {
        'model_id': model_id,
        'width_multiplier': width_multiplier,
        'stem_conv_temporal_kernel_size': stem_conv_temporal_kernel_size,
        'stem_conv_temporal_stride': stem_conv_temporal_stride,
        'stem_max_pool': stem_max_pool,
        'res5_dilation': res5_dilation,
        'input_specs': input_specs,
        'activation': activation,
        'use_sync_bn': use_sync_bn,
        'norm_momentum': norm_momentum,
        'norm_epsilon': norm_epsilon,
        'kernel_initializer': kernel_initializer,
        'kernel_regularizer': kernel_regularizer,
        'bias_regularizer': bias_regularizer,
    }
    conv_kwargs = dict(
        use_bias=False,
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer)
    block_kwargs = dict(
        kernel_initializer=kernel_initializer,
        kernel_regularizer=kernel_regularizer,
        bias_regularizer=bias_regularizer,
        activation=activation,
        use_sync_bn=use_sync_bn,
        norm_momentum=norm_momentum,
        norm_epsilon=norm_epsilon)

    inputs = tf_keras.Input(shape=input_specs.shape[1:], batch_size=input_specs.shape[0], name='image')
    x = layers.Conv3D(
        filters=_scaled(_STEM_FILTERS, width_multiplier),
        kernel_size=[stem_conv_temporal_kernel_size, 7, 7],
        strides=[stem_conv_temporal_stride, 2, 2],
        padding='same',
        name='stem_conv',
        **conv_kwargs)(inputs)
    x = _batch_norm(use_sync_bn, norm_momentum, norm_epsilon, name='stem_bn')(x)
    x = tf_utils.get_activation(activation, use_keras_layer=True)(x)
    if stem_max_pool:
      # No temporal pooling: the stem's stride 2 is the network's only temporal downsampling.
      x = layers.MaxPool3D(pool_size=[1, 3, 3], strides=[1, 2, 2], padding='same', name='stem_pool')(x)

    block_kind, repeats = R3D_SPECS[model_id]
    endpoints = {}
    for stage, (filters, num_blocks, temporal_kernel) in enumerate(
        zip(_STAGE_FILTERS, repeats, _STAGE_TEMPORAL_KERNELS)):
      level = stage + 2
      dilation = res5_dilation if level == 5 else 1
      for i in range(num_blocks):
        spatial_strides = 2 if (i == 0 and level > 2 and dilation == 1) else 1
        name = f'res{level}_block{i}'
        if block_kind == 'basic':
          block = BasicBlock3D(
              filters=_scaled(filters, width_multiplier),
              temporal_kernel_size=temporal_kernel,
              spatial_strides=spatial_strides,
              spatial_dilation_rate=dilation,
              name=name,
              **block_kwargs)
        elif dilation > 1:
          block = DilatedBottleneckBlock3D(
              spatial_dilation_rate=dilation,
              filters=_scaled(filters, width_multiplier),
              temporal_kernel_size=temporal_kernel,
              temporal_strides=1,
              spatial_strides=1,
              name=name,
              **block_kwargs)
        else:
          block = nn_blocks_3d.BottleneckBlock3D(
              filters=_scaled(filters, width_multiplier),
              temporal_kernel_size=temporal_kernel,
              temporal_strides=1,
              spatial_strides=spatial_strides,
              name=name,
              **block_kwargs)
        x = block(x)
      endpoints[str(level)] = x

    self._output_specs = {level: endpoint.get_shape() for level, endpoint in endpoints.items()}
    super().__init__(inputs=inputs, outputs=endpoints, **kwargs)

  @property
  def output_specs(self) -> Mapping[str, tf.TensorShape]:
    """A dict of {level: TensorShape} of the endpoints, level in '2'..'5'."""
    return self._output_specs

  @property
  def num_features(self) -> int:
    """Channels of the last endpoint, i.e. the dimension of the pooled video representation."""
    return int(self._output_specs['5'][-1])

  def get_config(self) -> Dict[str, Any]:
    return dict(self._config_dict)

  @classmethod
  def from_config(cls, config, custom_objects=None):
    return cls(**config)


def _check_input_shape(shape, stem_max_pool: bool, res5_dilation: int) -> None:
  """Raises ValueError if the backbone cannot take clips of `shape` ([batch, T, H, W, C], entries may be None)."""
  shape = tf.TensorShape(shape)
  if shape.rank != 5:
    raise ValueError(f'R3D takes clips [batch, T, H, W, C] (rank 5); got input shape {shape}. Set '
                     'task.train_data.feature_shape / task.validation_data.feature_shape to [T, H, W, C].')
  if shape[-1] is None or shape[-1] < 1:
    raise ValueError(f'R3D needs a known number of input channels; got input shape {shape}. Set the last '
                     'entry of task.train_data.feature_shape (3 for RGB).')
  if shape[1] is not None and shape[1] < 1:
    raise ValueError(f'R3D got an empty time axis in input shape {shape} (task.train_data.feature_shape).')
  total_stride = 2 * (2 if stem_max_pool else 1) * 2 * 2 * (2 if res5_dilation == 1 else 1)
  for axis, size in (('H', shape[2]), ('W', shape[3])):
    if size is not None and size < total_stride:
      raise ValueError(
          f'R3D input {axis}={size} (input shape {shape}) is smaller than the network\'s spatial stride '
          f'{total_stride}, so res5 would see padding only. Use frames of at least {total_stride} pixels '
          '(task.train_data.feature_shape), or reduce the stride with '
          f'{_CONFIG_PREFIX}.stem_max_pool=false or {_CONFIG_PREFIX}.res5_dilation=2.')


@factory.register_backbone_builder('r3d')
def build_r3d(input_specs: layers.InputSpec,
              backbone_config: hyperparams.Config,
              norm_activation_config: hyperparams.Config,
              l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> tf_keras.Model:
  """Builds an `R3D` from a `configs.backbones.Backbone3D` (type 'r3d') and a `NormActivation` config."""
  if backbone_config.type != 'r3d':
    raise ValueError(f'build_r3d needs task.model.backbone.type="r3d", got "{backbone_config.type}".')
  cfg = backbone_config.get()
  return R3D(
      model_id=cfg.model_id,
      width_multiplier=cfg.width_multiplier,
      stem_conv_temporal_kernel_size=cfg.stem_conv_temporal_kernel_size,
      stem_conv_temporal_stride=cfg.stem_conv_temporal_stride,
      stem_max_pool=cfg.stem_max_pool,
      res5_dilation=cfg.res5_dilation,
      input_specs=input_specs,
      activation=norm_activation_config.activation,
      use_sync_bn=norm_activation_config.use_sync_bn,
      norm_momentum=norm_activation_config.norm_momentum,
      norm_epsilon=norm_activation_config.norm_epsilon,
      kernel_regularizer=l2_regularizer)
