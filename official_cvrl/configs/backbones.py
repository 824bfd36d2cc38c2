"""Typed configs of the CVRL video encoder (R3D), its projection head and the two model kinds built on it.

`Backbone3D` extends Model Garden's one-of backbone config with an `r3d` branch, so `backbone: {type: 'r3d'}`
in YAML selects `official_cvrl.modeling.backbones.r3d.R3D` and Model Garden's own `resnet_3d` stays available.

The model configs are consumed by the builders registered in `official_cvrl.modeling.factory`:
`model_type: 'cvrl'` (pretraining: encoder + projection head) and `model_type: 'cvrl_classifier'` (linear
evaluation or fine-tuning: encoder + linear classifier). The number of classes is not a model field: the task
passes it to the builder from its data config.

Batch norm defaults to momentum 0.9 and epsilon 1e-5 (`cvrl_norm_activation`), the settings of the authors' code
and of Model Garden's video_ssl, with which the released CVRL checkpoints were trained: epsilon is not stored in
a checkpoint, and with Keras' default 1e-3 a released backbone's features are off by about 0.6% (relative).
"""
import dataclasses
from typing import Optional

from official.modeling import hyperparams
from official.vision.configs import backbones_3d
from official.vision.configs import common

# Batch norm of the authors' CVRL code and of Model Garden's video_ssl, so of the released checkpoints
# (docs/evaluation.md). A backbone restored from them must use the same epsilon to reproduce their features.
CVRL_NORM_MOMENTUM = 0.9
CVRL_NORM_EPSILON = 1e-5


def cvrl_norm_activation(use_sync_bn: bool) -> common.NormActivation:
  """Model Garden's `NormActivation` with CVRL's batch norm momentum and epsilon (see the module docstring)."""
  return common.NormActivation(norm_momentum=CVRL_NORM_MOMENTUM, norm_epsilon=CVRL_NORM_EPSILON,
                               use_sync_bn=use_sync_bn)


@dataclasses.dataclass
class R3D(hyperparams.Config):
  """The CVRL 3D-ResNet (paper Table 1): the "slow" pathway of SlowFast with a 5x7x7 stride-2 stem.

  Attributes:
    model_id: Depth: 18 or 34 (basic blocks, 512 * width_multiplier output channels) or 50, 101, 152, 200
      (bottleneck blocks, 2048 * width_multiplier output channels).
    width_multiplier: Multiplies every filter count, the stem's included, so also the output feature dimension
      (the paper's 2x and 4x models). `64 * width_multiplier` must be a whole number: 0.25 and 0.5 give CPU-sized
      demo models, 1, 2 and 4 the paper's.
    stem_conv_temporal_kernel_size: Temporal kernel size of the 7x7 stem convolution (paper: 5).
    stem_conv_temporal_stride: Temporal stride of the stem convolution (paper: 2); no other layer strides in
      time.
    stem_max_pool: Whether to apply the 1x3x3 spatial-stride-2 max pool after the stem. Turn it off for tiny
      (e.g. 32x32) inputs so that res5 keeps more than one spatial position.
    res5_dilation: 1 for the classification network; 2 gives res5 spatial stride 1 with dilation 2 (output
      stride 16, as used for AVA detection). The weights are identical in both settings, so a checkpoint
      pretrained with 1 restores into a backbone built with 2.
  """
  model_id: int = 50
  width_multiplier: float = 1.0
  stem_conv_temporal_kernel_size: int = 5
  stem_conv_temporal_stride: int = 2
  stem_max_pool: bool = True
  res5_dilation: int = 1


@dataclasses.dataclass
class Backbone3D(backbones_3d.Backbone3D):
  """Model Garden's 3D backbone one-of config plus the CVRL `r3d` branch.

  Attributes:
    type: Name of the selected backbone: 'r3d', or one of Model Garden's ('resnet_3d', 'resnet_3d_rs').
    r3d: Config of the CVRL R3D backbone, used when type is 'r3d'.
  """
  type: Optional[str] = 'r3d'
  r3d: R3D = dataclasses.field(default_factory=R3D)


@dataclasses.dataclass
class ProjectionHead(hyperparams.Config):
  """The MLP mapping the encoder's pooled features to the embedding the contrastive loss compares.

  Attributes:
    num_hidden_layers: Number of [Dense -> BatchNorm -> activation] layers before the output Dense (paper
      Table 6: 3 is best). 0 gives a linear projection.
    hidden_dim: Width of each hidden layer for a width-1 backbone. The builder multiplies it by the backbone's
      `width_multiplier` (paper Sec. 3.2: the 2x/4x models widen the MLP too), so 2048 becomes 4096 for a 2x
      R3D. Backbones without a width multiplier use it as is.
    output_dim: Dimension of the projection the loss normalises and compares (paper: 128). Not scaled.
  """
  num_hidden_layers: int = 3
  hidden_dim: int = 2048
  output_dim: int = 128


@dataclasses.dataclass
class CVRLModel(hyperparams.Config):
  """Config of the pretraining model: R3D encoder -> global average pool -> projection head.

  Attributes:
    model_type: Key of the registered model builder ('cvrl').
    backbone: The video encoder.
    norm_activation: Batch norm settings and activation of the encoder and of the projection head's hidden
      layers. Synchronised batch norm is on by default: with per-replica statistics, a replica's batch can
      tell the two views of its own videos apart from the batch statistics alone (the SimCLR argument for
      global BN in contrastive learning). Momentum 0.9, epsilon 1e-5 (`cvrl_norm_activation`).
    projection_head: The MLP on top of the pooled features.
  """
  model_type: str = 'cvrl'
  backbone: Backbone3D = dataclasses.field(default_factory=Backbone3D)
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: cvrl_norm_activation(use_sync_bn=True))
  projection_head: ProjectionHead = dataclasses.field(default_factory=ProjectionHead)


@dataclasses.dataclass
class VideoClassifierModel(hyperparams.Config):
  """Config of the evaluation model: R3D encoder -> pool -> [L2 normalise] -> dropout -> linear classifier.

  Used both for the linear evaluation protocol (frozen backbone, `normalize_features: true`) and for
  fine-tuning. The number of classes comes from the task's data config.

  Attributes:
    model_type: Key of the registered model builder ('cvrl_classifier').
    backbone: The video encoder; its variables have the same structure as in `CVRLModel`, so a pretraining
      checkpoint restores into it.
    norm_activation: Batch norm settings and activation of the encoder; momentum 0.9, epsilon 1e-5 as in
      pretraining (`cvrl_norm_activation`), so a fine-tuned backbone keeps the statistics' meaning.
    dropout_rate: Dropout rate on the pooled features before the classifier, in [0, 1).
    normalize_features: Whether to L2-normalise the pooled features before the classifier.
    standardize_features: Whether to standardise the (normalised) features with a batch norm without scale or
      offset, a fixed affine map at inference (MAE's linear probe); it speeds up short linear probes.
  """
  model_type: str = 'cvrl_classifier'
  backbone: Backbone3D = dataclasses.field(default_factory=Backbone3D)
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: cvrl_norm_activation(use_sync_bn=False))
  dropout_rate: float = 0.0
  normalize_features: bool = False
  standardize_features: bool = False
