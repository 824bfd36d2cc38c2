"""Model builders registered with Model Garden's 3D model factory: 'cvrl' and 'cvrl_classifier'.

A task builds either model with
`official.vision.modeling.factory_3d.build_model(model_config.model_type, input_specs, model_config, num_classes,
l2_regularizer)` once this module (and `official_cvrl.modeling.backbones.r3d`, imported here) has been imported.
"""
from typing import Optional

import tf_keras

from official.modeling import hyperparams
from official.vision.modeling import backbones as mg_backbones
from official.vision.modeling import factory_3d
from official_cvrl.configs import backbones as backbones_cfg
from official_cvrl.modeling import cvrl_model
from official_cvrl.modeling.backbones import r3d  # pylint: disable=unused-import  # Registers the 'r3d' builder.


def build_backbone(input_specs: tf_keras.layers.InputSpec,
                   model_config: hyperparams.Config,
                   l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> tf_keras.Model:
  """Builds the backbone of a `CVRLModel` or `VideoClassifierModel` config.

  Args:
    input_specs: Spec of the input clips `[batch, T, H, W, 3]`.
    model_config: A config with `backbone` (a one-of `Backbone3D`) and `norm_activation` fields.
    l2_regularizer: Regularizer of the convolution kernels, or None.

  Returns:
    The backbone model, returning a dict of endpoints.
  """
  return mg_backbones.factory.build_backbone(
      input_specs=input_specs,
      backbone_config=model_config.backbone,
      norm_activation_config=model_config.norm_activation,
      l2_regularizer=l2_regularizer)


def _backbone_width_multiplier(backbone_config: hyperparams.Config) -> float:
  """The selected backbone's width multiplier; 1 for backbones that have none (e.g. Model Garden's)."""
  return getattr(backbone_config.get(), 'width_multiplier', 1.0)


def _check_model_type(model_config: hyperparams.Config, expected: str) -> None:
  if model_config.model_type != expected:
    raise ValueError(f'The "{expected}" model builder got task.model.model_type="{model_config.model_type}".')


@factory_3d.register_model_builder('cvrl')
def build_cvrl_model(input_specs: tf_keras.layers.InputSpec,
                     model_config: backbones_cfg.CVRLModel,
                     num_classes: Optional[int] = None,
                     l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> cvrl_model.CVRLModel:
  """Builds the pretraining model.

  Args:
    input_specs: Spec of the input clips `[batch * 2, T, H, W, 3]`.
    model_config: The `CVRLModel` config.
    num_classes: Unused: pretraining has no classes. Present because the registry's signature has it.
    l2_regularizer: Regularizer of every convolution and Dense kernel, or None (e.g. when the optimizer applies
      weight decay).

  Returns:
    A `CVRLModel` whose head's hidden width is `projection_head.hidden_dim` times the backbone's width
    multiplier.
  """
  del num_classes  # Self-supervised: no labels.
  _check_model_type(model_config, 'cvrl')
  backbone = build_backbone(input_specs, model_config, l2_regularizer)
  head_cfg = model_config.projection_head
  norm_cfg = model_config.norm_activation
  hidden_dim = int(round(head_cfg.hidden_dim * _backbone_width_multiplier(model_config.backbone)))
  return cvrl_model.CVRLModel(
      backbone=backbone,
      input_specs=input_specs,
      num_hidden_layers=head_cfg.num_hidden_layers,
      hidden_dim=hidden_dim,
      output_dim=head_cfg.output_dim,
      activation=norm_cfg.activation,
      use_sync_bn=norm_cfg.use_sync_bn,
      norm_momentum=norm_cfg.norm_momentum,
      norm_epsilon=norm_cfg.norm_epsilon,
      kernel_regularizer=l2_regularizer)


@factory_3d.register_model_builder('cvrl_classifier')
def build_video_classifier(
    input_specs: tf_keras.layers.InputSpec,
    model_config: backbones_cfg.VideoClassifierModel,
    num_classes: int,
    l2_regularizer: Optional[tf_keras.regularizers.Regularizer] = None) -> cvrl_model.VideoClassifier:
  """Builds the linear-evaluation / fine-tuning classifier.

  Args:
    input_specs: Spec of the input clips `[batch, T, H, W, 3]`.
    model_config: The `VideoClassifierModel` config.
    num_classes: Number of classes, from the task's data config.
    l2_regularizer: Regularizer of every convolution and Dense kernel, or None.

  Returns:
    A `VideoClassifier` producing float32 logits `[batch, num_classes]`.
  """
  _check_model_type(model_config, 'cvrl_classifier')
  backbone = build_backbone(input_specs, model_config, l2_regularizer)
  return cvrl_model.VideoClassifier(
      backbone=backbone,
      num_classes=num_classes,
      input_specs=input_specs,
      dropout_rate=model_config.dropout_rate,
      normalize_features=model_config.normalize_features,
      standardize_features=model_config.standardize_features,
      kernel_regularizer=l2_regularizer)
