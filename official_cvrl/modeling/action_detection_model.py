"""The AVA action detector: an R3D backbone with a spatio-temporal RoI head (paper Sec. 4.1, Table 5).

backbone -> last block's features `[B, T', H', W', C]` -> average over time -> RoIAlign of every person box to
7x7 -> spatial max pool -> dropout -> linear classifier, one logit per class (sigmoid multi-label: a person can
stand, talk and watch at once). RoIAlign is Model Garden's `multilevel_crop_and_resize` with a single level: boxes
are given in feature-map coordinates, so no pyramid level arithmetic applies (it assumes strides 2**level, while
the res5 stride here is 16 with `res5_dilation=2`, or 32).

Registered as model builder 'cvrl_action_detection' with Model Garden's 3D factory; `checkpoint_items` exposes
the backbone so a CVRL pretraining checkpoint restores into it.
"""
from typing import Any, Dict, Optional

import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official.vision.ops import spatial_transform_ops
from official_cvrl.configs import action_detection as detection_cfg
from official_cvrl.modeling import cvrl_model
from official_cvrl.modeling import factory

layers = tf_keras.layers


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class SpatioTemporalRoIPool(layers.Layer):
  """Temporal average pool, RoIAlign of normalised boxes, spatial max pool."""

  def __init__(self, output_size: int = 7, **kwargs):
    """Initialises the layer.

    Args:
      output_size: side of the RoIAlign grid of each box.
      **kwargs: passed to the Layer.
    """
    super().__init__(**kwargs)
    self._output_size = output_size

  def call(self, features: tf.Tensor, boxes: tf.Tensor) -> tf.Tensor:
    """Pools one feature vector per box.

    Args:
      features: `[B, T', H', W', C]` backbone features.
      boxes: `[B, N, 4]` normalised `[ymin, xmin, ymax, xmax]` boxes.

    Returns:
      float32 `[B, N, C]`.
    """
    features = tf.reduce_mean(tf.cast(features, tf.float32), axis=1)
    shape = tf.shape(features)
    scale = tf.cast(tf.stack([shape[1], shape[2], shape[1], shape[2]]), tf.float32)
    boxes = tf.cast(boxes, tf.float32) * scale
    # Level 0: the single feature map is at stride 2**0 = 1 of the box coordinates.
    crops = spatial_transform_ops.multilevel_crop_and_resize({'0': features}, boxes, output_size=self._output_size)
    return tf.reduce_max(crops, axis=[2, 3])

  def get_config(self) -> Dict[str, Any]:
    config = super().get_config()
    config['output_size'] = self._output_size
    return config


@tf_keras.utils.register_keras_serializable(package='official_cvrl')
class ActionDetectionModel(cvrl_model.BackboneModel):
  """Inputs {'image': `[B, T, H, W, 3]`, 'boxes': `[B, N, 4]`}; output float32 logits `[B, N, num_classes]`."""

  def __init__(self,
               backbone: tf_keras.Model,
               num_classes: int,
               input_specs: layers.InputSpec = layers.InputSpec(shape=[None, None, None, None, 3]),
               roi_output_size: int = 7,
               dropout_rate: float = 0.5,
               kernel_initializer: Any = None,
               kernel_regularizer: Optional[tf_keras.regularizers.Regularizer] = None,
               **kwargs):
    """Builds the detector.

    Args:
      backbone: a 3D backbone returning a dict of endpoints keyed by level ('2'..'5'); the deepest is used.
      num_classes: number of action classes.
      input_specs: spec of the clips `[B, T, H, W, 3]`.
      roi_output_size: RoIAlign grid side.
      dropout_rate: dropout on the pooled box features, in [0, 1).
      kernel_initializer: classifier kernel initializer; None: normal with stddev 0.01 (SlowFast's head).
      kernel_regularizer: classifier kernel regularizer.
      **kwargs: passed to `tf_keras.Model`.
    """
    if num_classes < 1:
      raise ValueError(f'ActionDetectionModel needs num_classes >= 1, got {num_classes}.')
    if not 0.0 <= dropout_rate < 1.0:
      raise ValueError(f'task.model.dropout_rate must be in [0, 1), got {dropout_rate}.')
    if roi_output_size < 1:
      raise ValueError(f'task.model.roi_output_size must be >= 1, got {roi_output_size}.')
    self._self_setattr_tracking = False
    self._config_dict = {
        'backbone': backbone, 'num_classes': num_classes, 'input_specs': input_specs,
        'roi_output_size': roi_output_size, 'dropout_rate': dropout_rate,
        'kernel_initializer': kernel_initializer, 'kernel_regularizer': kernel_regularizer,
    }
    self._backbone = backbone
    image = tf_keras.Input(shape=input_specs.shape[1:], batch_size=input_specs.shape[0], name='image')
    boxes = tf_keras.Input(shape=[None, 4], batch_size=input_specs.shape[0], name='boxes')
    endpoints = backbone(image)
    last = endpoints[max(endpoints, key=int)]
    x = SpatioTemporalRoIPool(roi_output_size, dtype='float32', name='roi_pool')(last, boxes)
    x = layers.Dropout(dropout_rate, name='dropout')(x)
    x = layers.Dense(
        num_classes,
        kernel_initializer=kernel_initializer or tf_keras.initializers.RandomNormal(stddev=0.01),
        kernel_regularizer=kernel_regularizer,
        name='classifier')(x)
    logits = layers.Activation('linear', dtype='float32', name='logits')(x)
    super().__init__(inputs={'image': image, 'boxes': boxes}, outputs=logits, **kwargs)
    self._self_setattr_tracking = True


@factory_3d.register_model_builder('cvrl_action_detection')
def build_action_detection_model(
    input_specs: tf_keras.layers.InputSpec,
    model_config: detection_cfg.ActionDetectionModel,
    num_classes: int,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> ActionDetectionModel:
  """Builds the detector from its config.

  Args:
    input_specs: spec of the clips `[B, T, H, W, 3]`.
    model_config: the `ActionDetectionModel` config.
    num_classes: action classes, from the task's data config.
    l2_regularizer: regularizer of every convolution and Dense kernel, or None.

  Returns:
    An `ActionDetectionModel`.
  """
  if model_config.model_type != 'cvrl_action_detection':
    raise ValueError('The "cvrl_action_detection" model builder got task.model.model_type='
                     f'"{model_config.model_type}".')
  backbone = factory.build_backbone(input_specs, model_config, l2_regularizer)
  return ActionDetectionModel(
      backbone=backbone,
      num_classes=num_classes,
      input_specs=input_specs,
      roi_output_size=model_config.roi_output_size,
      dropout_rate=model_config.dropout_rate,
      kernel_regularizer=l2_regularizer)
