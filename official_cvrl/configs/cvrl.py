"""CVRL pretraining configs and registered experiments.

Every experiment here is built by one parameterised helper, `pretrain_experiment`, from a dataset preset. The
paper's settings (Sec. 4.1) are the defaults: R3D-50, two 16-frame clips at temporal stride 2 and 224x224, batch
1024, SGD momentum 0.9, learning rate 0.32 with 5 warm-up epochs then half-period cosine decay, 800 epochs,
temperature 0.1, synchronized batch norm and a 3-hidden-layer projection head.

Settings the paper leaves open, and our choice:
- weight decay: 1e-6 (L2 on kernels, as Model Garden's upstream CVRL YAML), applied by the task, not the loss;
- Gaussian blur probability: 0.5 per clip (SimCLR's value for one of its two views; CVRL blurs both);
- colour jitter strength: 1.0 (SimCLR's default for ImageNet).
"""
import dataclasses
from typing import Optional, Tuple

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import common

from official_cvrl.configs import backbones
from official_cvrl.configs import field_types
from official_cvrl.dataloaders import feature_keys

INTERVAL_DISTRIBUTIONS = ('decreasing', 'uniform', 'increasing')


@dataclasses.dataclass
class TemporalAugmentation(hyperparams.Config):
  """Temporal interval sampling between the two clips of a pair (Sec. 3.3, Fig. 3).

  Attributes:
    enabled: False makes both clips start at the same frame (the "SA only" ablation).
    interval_distribution: shape of P(t): 'decreasing' (P ∝ -t^p + c), 'uniform' or 'increasing' (P ∝ t^p + c).
    interval_power: the exponent p.
  """
  enabled: bool = True
  interval_distribution: str = 'decreasing'
  interval_power: float = 1.0


@dataclasses.dataclass
class SpatialAugmentation(hyperparams.Config):
  """Spatial augmentation of Algorithm 1.

  Crop and flip run in the input pipeline; colour jitter, greyscale and blur run in the train step on the
  accelerator, batched. With `temporally_consistent` every random parameter is drawn once per clip; False draws
  them per frame (the "no TC" ablation of Table 9). `color_jitter_random_order` applies brightness, contrast,
  saturation and hue in a random order per clip, as SimCLR; False uses that fixed order, 4x cheaper (the CPU demo).
  """
  enabled: bool = True
  temporally_consistent: bool = True
  crop_area_range: Tuple[float, float] = (0.3, 1.0)
  crop_aspect_ratio_range: Tuple[float, float] = (0.5, 2.0)
  flip_probability: float = 0.5
  color_jitter_probability: float = 0.8
  color_jitter_strength: float = 1.0
  color_jitter_random_order: bool = True
  grayscale_probability: float = 0.2
  blur_probability: float = 0.5


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """Input config for SequenceExample TFRecords with JPEG frames.

  Attributes:
    name: dataset name, for logs.
    feature_shape: [frames per clip, crop height, crop width, 3].
    temporal_stride: frame stride inside a clip (the "data layer" stride of Table 1).
    num_classes: number of classes; read by the classification tasks, unused (-1) in pretraining.
    image_field_key / label_field_key: SequenceExample keys (Model Garden's by default).
    num_clips: pretraining clips per video, rho >= 2. 2 is the paper; more gives every clip rho - 1 positives
      (multi-positive InfoNCE, `losses.contrastive.multi_view_contrastive_loss`). Read by the pretrain task only.
    device_resize_canvas: None resizes and flips the crops in the CPU pipeline. [height, width] makes the CPU
      only decode each clip's crop window and ship it on a canvas of that size; the train step resizes and flips
      it on the accelerator (`ops.window_resize`), with the same result. Saves about half of the pipeline's CPU
      time per pair at 224x224; a canvas that holds the stored frames (e.g. [256, 340] for Kinetics at short
      side 256) makes every crop fit, larger crops are resized on the CPU. Read by the pretrain task only.
  """
  name: Optional[str] = None
  file_type: str = 'tfrecord'
  feature_shape: Tuple[int, ...] = (16, 224, 224, 3)
  temporal_stride: int = 2
  num_classes: int = -1
  image_field_key: str = feature_keys.IMAGE_KEY
  label_field_key: str = feature_keys.LABEL_INDEX_KEY
  temporal_augmentation: TemporalAugmentation = dataclasses.field(default_factory=TemporalAugmentation)
  spatial_augmentation: SpatialAugmentation = dataclasses.field(default_factory=SpatialAugmentation)
  shuffle_buffer_size: int = 1024
  drop_remainder: bool = True
  num_clips: int = 2
  device_resize_canvas: Optional[Tuple[int, int]] = None

  def validate(self, key: str = 'data'):
    if len(self.feature_shape) != 4 or self.feature_shape[-1] != 3:
      raise ValueError(f'{key}.feature_shape must be [frames, height, width, 3], got {self.feature_shape}.')
    if self.feature_shape[0] < 1 or self.temporal_stride < 1:
      raise ValueError(f'{key}.feature_shape[0] (frames per clip) and {key}.temporal_stride must be >= 1, got '
                       f'{self.feature_shape[0]} and {self.temporal_stride}.')
    if self.num_clips < 2:
      raise ValueError(f'{key}.num_clips must be >= 2 (clips per video in pretraining), got {self.num_clips}.')
    distribution = self.temporal_augmentation.interval_distribution
    if distribution not in INTERVAL_DISTRIBUTIONS:
      raise ValueError(f'{key}.temporal_augmentation.interval_distribution={distribution!r}; expected one of '
                       f'{INTERVAL_DISTRIBUTIONS}.')
    spatial = self.spatial_augmentation
    for name in ('flip_probability', 'color_jitter_probability', 'grayscale_probability', 'blur_probability'):
      value = getattr(spatial, name)
      if not 0.0 <= value <= 1.0:
        raise ValueError(f'{key}.spatial_augmentation.{name}={value} is not a probability in [0, 1].')
    low, high = spatial.crop_area_range
    if not 0.0 < low <= high <= 1.0:
      raise ValueError(f'{key}.spatial_augmentation.crop_area_range={spatial.crop_area_range} must satisfy '
                       '0 < low <= high <= 1.')
    canvas = self.device_resize_canvas
    if canvas is not None:
      if len(canvas) != 2 or canvas[0] < self.feature_shape[1] or canvas[1] < self.feature_shape[2]:
        raise ValueError(f'{key}.device_resize_canvas={list(canvas)} must be [height, width], at least the crop '
                         f'size {list(self.feature_shape[1:3])}; or null to resize on the CPU.')
      if spatial.enabled and not spatial.temporally_consistent:
        raise ValueError(f'{key}.device_resize_canvas needs {key}.spatial_augmentation.temporally_consistent=true '
                         '(one window per clip); set it to null for the per-frame windows of the no-TC ablation.')


@dataclasses.dataclass
class ContrastiveLosses(hyperparams.Config):
  """Loss settings: InfoNCE temperature (Eq. 1) and L2 weight decay on kernels."""
  temperature: float = 0.1
  l2_weight_decay: float = 1e-6


@dataclasses.dataclass
class KnnMonitor(hyperparams.Config):
  """Weighted kNN top-1 of the validation videos' backbone features at each evaluation (`evaluation.knn_monitor`).

  Leave-one-out among the labelled validation videos (the first clip of each pair, as the validation pipeline
  draws it), votes exp(cos / temperature) over the k nearest. It uses labels: a monitor of pretraining, not a
  result (the linear evaluation is). Off by default: Kinetics' validation set is large and its labels are not
  needed to pretrain; the demo turns it on.
  """
  enabled: bool = False
  k: int = 20
  temperature: float = 0.07


@dataclasses.dataclass
class CVRLPretrainTask(cfg.TaskConfig):
  """The pretraining task."""
  model: backbones.CVRLModel = dataclasses.field(default_factory=backbones.CVRLModel)
  train_data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=False, drop_remainder=False))
  losses: ContrastiveLosses = dataclasses.field(default_factory=ContrastiveLosses)
  # Gradient caching (tasks/gradient_cache.py): 0 = off; else rows of the replica batch (rho * videos) embedded
  # per chunk, so memory follows the chunk while the loss still sees the whole batch. Equals the unchunked step
  # with batch norm statistics per chunk (ghost batch norm); must divide rho * per-replica batch.
  gradient_chunk_size: int = 0
  knn_monitor: KnnMonitor = dataclasses.field(default_factory=KnnMonitor)

  def validate(self):
    self.train_data.validate('task.train_data')
    self.validation_data.validate('task.validation_data')
    if self.validation_data.num_clips != self.train_data.num_clips:
      raise ValueError(f'task.validation_data.num_clips={self.validation_data.num_clips} differs from '
                       f'task.train_data.num_clips={self.train_data.num_clips}: the validation loss uses the '
                       'training loss, so set both to the same number of clips per video.')
    if self.knn_monitor.k < 1 or not self.knn_monitor.temperature > 0:
      raise ValueError(f'task.knn_monitor needs k >= 1 and temperature > 0, got k={self.knn_monitor.k}, '
                       f'temperature={self.knn_monitor.temperature}.')
    if self.gradient_chunk_size < 0:
      raise ValueError(f'task.gradient_chunk_size must be >= 0 (0 = off), got {self.gradient_chunk_size}.')
    rows = self.train_data.num_clips * self.train_data.global_batch_size
    if self.gradient_chunk_size and rows % self.gradient_chunk_size:
      raise ValueError(f'task.gradient_chunk_size={self.gradient_chunk_size} must divide num_clips x '
                       f'global_batch_size = {rows} (and the per-replica share of it).')
    if self.losses.temperature <= 0:
      raise ValueError(f'task.losses.temperature must be > 0, got {self.losses.temperature}.')
    if self.losses.l2_weight_decay < 0:
      raise ValueError(f'task.losses.l2_weight_decay must be >= 0, got {self.losses.l2_weight_decay}.')


@dataclasses.dataclass(frozen=True)
class DatasetPreset:
  """What an experiment needs to know about a dataset."""
  name: str
  train_examples: int
  validation_examples: int
  num_classes: int
  train_pattern: str
  validation_pattern: str


# Example counts are those of Model Garden's Kinetics TFRecords; copies downloaded today are a few percent smaller
# (videos disappear from YouTube). For your copy, recompute the step counts from what `data_tools.verify` reports
# (each YAML file's header shows the arithmetic).
DATASETS = {
    'kinetics400': DatasetPreset('kinetics400', 215570, 17706, 400,
                                 'kinetics400/train-*', 'kinetics400/val-*'),
    'kinetics600': DatasetPreset('kinetics600', 366016, 27780, 600,
                                 'kinetics600/train-*', 'kinetics600/val-*'),
}


@dataclasses.dataclass
class TaskValidatedExperimentConfig(cfg.ExperimentConfig):
  """The experiment config of every CVRL family: typed values, and a `validate()` that also validates the task.

  Model Garden's `ExperimentConfig.validate()` only checks `restrictions`; `train_utils.parse_configuration` calls
  it before anything is built, so this is where the declared field types (`field_types`) and the task's own
  checks run, the same way for every family and every entry point. Each `override` (a YAML file, a
  `--params_override`) already widens integers where floats are declared, so `initial_learning_rate: 32` works.
  """

  def override(self, override_params, is_strict=True):
    super().override(override_params, is_strict)
    field_types.conform(self, raise_errors=False)

  def validate(self):
    field_types.conform(self)
    super().validate()
    self.task.validate()


def validate_labelled_data(train_data: cfg.DataConfig, validation_data: cfg.DataConfig) -> None:
  """The checks every labelled task makes of its two data configs (each has `validate(key)` and `num_classes`)."""
  train_data.validate('task.train_data')
  validation_data.validate('task.validation_data')
  if not train_data.is_training or validation_data.is_training:
    raise ValueError('task.train_data.is_training must be true and task.validation_data.is_training false.')
  if train_data.num_classes != validation_data.num_classes:
    raise ValueError(f'task.train_data.num_classes={train_data.num_classes} differs from '
                     f'task.validation_data.num_classes={validation_data.num_classes}.')


def steps_per_epoch(num_examples: int, global_batch_size: int) -> int:
  """Whole steps in one pass over `num_examples` (at least 1)."""
  return max(1, num_examples // global_batch_size)


def sgd_cosine_optimization(learning_rate: float, total_steps: int, warmup_steps: int,
                            momentum: float = 0.9) -> optimization.OptimizationConfig:
  """SGD with momentum, linear warm-up, then half-period cosine decay to zero over the remaining steps."""
  return optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': momentum, 'nesterov': False}},
      'learning_rate': {
          'type': 'cosine',
          'cosine': {'initial_learning_rate': learning_rate,
                     'decay_steps': max(1, total_steps - warmup_steps),
                     'offset': warmup_steps},
      },
      'warmup': {'type': 'linear', 'linear': {'warmup_steps': warmup_steps, 'warmup_learning_rate': 0.0}},
  })


def adam_cosine_optimization(learning_rate: float, total_steps: int,
                             warmup_steps: int) -> optimization.OptimizationConfig:
  """Adam with linear warm-up then cosine decay: converges fast enough for the short CPU demo runs."""
  config = sgd_cosine_optimization(learning_rate, total_steps, warmup_steps)
  config.optimizer = optimization.OptimizerConfig({'type': 'adam'})
  return config


def pretrain_experiment(preset: DatasetPreset,
                        data_root: str = 'gs://YOUR_BUCKET',
                        global_batch_size: int = 1024,
                        learning_rate: float = 0.32,
                        epochs: int = 800,
                        warmup_epochs: int = 5) -> TaskValidatedExperimentConfig:
  """Builds the paper's pretraining experiment on `preset`."""
  per_epoch = steps_per_epoch(preset.train_examples, global_batch_size)
  total_steps = per_epoch * epochs
  task = CVRLPretrainTask(
      model=backbones.CVRLModel(),
      train_data=DataConfig(
          name=preset.name, is_training=True, input_path=f'{data_root}/{preset.train_pattern}',
          global_batch_size=global_batch_size),
      validation_data=DataConfig(
          name=preset.name, is_training=False, input_path=f'{data_root}/{preset.validation_pattern}',
          global_batch_size=global_batch_size, drop_remainder=False))
  return TaskValidatedExperimentConfig(
      task=task,
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      trainer=cfg.TrainerConfig(
          train_steps=total_steps,
          validation_steps=max(1, preset.validation_examples // global_batch_size),
          validation_interval=per_epoch * 10,
          steps_per_loop=per_epoch,
          summary_interval=per_epoch,
          checkpoint_interval=per_epoch,
          optimizer_config=sgd_cosine_optimization(learning_rate, total_steps, per_epoch * warmup_epochs)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


@exp_factory.register_config_factory('cvrl_pretrain_kinetics400')
def cvrl_pretrain_kinetics400() -> cfg.ExperimentConfig:
  """CVRL R3D-50 pretraining on Kinetics-400 (paper Table 2: 66.1% linear eval)."""
  return pretrain_experiment(DATASETS['kinetics400'])


@exp_factory.register_config_factory('cvrl_pretrain_kinetics600')
def cvrl_pretrain_kinetics600() -> cfg.ExperimentConfig:
  """CVRL R3D-50 pretraining on Kinetics-600 (paper Table 2: 70.4% linear eval on K600)."""
  return pretrain_experiment(DATASETS['kinetics600'])


# The embedded demo data (`python -m data_tools.synthetic.demo_dataset`): 32x32 procedural videos of 48 frames, 8 motion
# classes; `make demo` writes its TFRecords to demo_output/tfrecords.
DEMO_DATASET = DatasetPreset('cvrl_demo', 2000, 400, 8, 'train-*-of-*.tfrecord', 'val-*-of-*.tfrecord')
DEMO_DATA_ROOT = 'demo_output/tfrecords'


def demo_backbone() -> backbones.Backbone3D:
  """R3D-18 at a quarter width (16-128 channels, 1.4 M parameters), sized for 8x32x32 clips on a CPU.

  The stem keeps the paper's temporal and spatial strides (its 3x7x7 kernel sees the fine motion at full
  resolution); res2 then works on 4x8x8 positions, which keeps a training step cheap enough for a 2-core CPU.
  """
  return backbones.Backbone3D(type='r3d', r3d=backbones.R3D(
      model_id=18, width_multiplier=0.25, stem_conv_temporal_kernel_size=3, stem_conv_temporal_stride=2,
      stem_max_pool=True))


def demo_data(split_pattern: str, is_training: bool, global_batch_size: int) -> DataConfig:
  """Demo clips: 8 frames at stride 2 from 48-frame videos, 32x32.

  Horizontal flips are off: the demo's classes are motion directions and rotation senses, which a flip turns
  into each other (right <-> left, clockwise <-> anticlockwise), so the loss would pull opposite classes
  together. Blur is off: at 32x32 pixels a SimCLR blur (sigma up to 2 px) wipes out the small object. The colour
  jitter uses a fixed order: the random order's four HSV passes cost a third of a CPU training step.
  """
  return DataConfig(
      name=DEMO_DATASET.name, is_training=is_training, input_path=f'{DEMO_DATA_ROOT}/{split_pattern}',
      global_batch_size=global_batch_size, feature_shape=(8, 32, 32, 3), temporal_stride=2,
      drop_remainder=is_training, shuffle_buffer_size=2000,
      spatial_augmentation=SpatialAugmentation(
          crop_area_range=(0.5, 1.0), flip_probability=0.0, color_jitter_strength=0.8,
          color_jitter_random_order=False, blur_probability=0.0))


@exp_factory.register_config_factory('cvrl_pretrain_demo')
def cvrl_pretrain_demo() -> cfg.ExperimentConfig:
  """CVRL on the embedded demo data, sized for a 2-core CPU in a few minutes (see README, Quickstart).

  625 steps (the ablations' "500 epochs"): the epochs study (docs/ablations.md) measured 87.7 +- 0.2% probe
  top-1 at 625 steps over three seeds, where 1000 steps gave 87.0-88.9% in the demo's earlier runs; the last 375
  steps bought nothing measurable. The warm-up stays 5% of the steps (the ablation driver scales from it).
  """
  batch_size = 64
  train_steps = 625
  config = pretrain_experiment(DEMO_DATASET, data_root=DEMO_DATA_ROOT, global_batch_size=batch_size)
  config.task.model = backbones.CVRLModel(
      backbone=demo_backbone(),
      norm_activation=common.NormActivation(use_sync_bn=False),
      projection_head=backbones.ProjectionHead(num_hidden_layers=2))
  config.task.train_data = demo_data(DEMO_DATASET.train_pattern, True, batch_size)
  config.task.validation_data = demo_data(DEMO_DATASET.validation_pattern, False, batch_size)
  config.task.knn_monitor = KnnMonitor(enabled=True)  # The demo's validation videos are labelled.
  config.runtime.mixed_precision_dtype = 'float32'
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=DEMO_DATASET.validation_examples // batch_size,
      validation_interval=250,
      steps_per_loop=50,
      summary_interval=50,
      checkpoint_interval=250,
      max_to_keep=2,
      optimizer_config=adam_cosine_optimization(2e-3, train_steps, warmup_steps=31))
  return config
