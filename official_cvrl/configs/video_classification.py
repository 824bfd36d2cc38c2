"""Configs and registered experiments of the CVRL evaluation protocols (paper Sec. 3.4, 4.1, Tables 2-4).

Three task kinds, one config dataclass each, each registered to its task class in
`official_cvrl.tasks.video_classification`:

- `LinearEvalTask`: the backbone is frozen (weights and batch-norm statistics), its pooled features are
  L2-normalised and one linear classifier is trained on them;
- `FineTuneTask`: every layer is trained, starting from a pretrained backbone: the semi-supervised protocol
  (class-balanced 1% / 10% label subsets of Kinetics) and the transfer to UCF-101 / HMDB-51;
- `SupervisedTask`: the same network trained from scratch, the paper's upper bound.

Every experiment is built by one parameterised helper, `classification_experiment`, from a dataset preset and a
`Protocol` (the paper's optimisation settings of one stage). Testing is the paper's everywhere: 10 clips x 3
crops per video, each crop a square of the frame's short side resized to 256 (32 frames at stride 2), and the
softmax averaged over the 30 views.

Two config fields select files through placeholders in `input_path`, so one experiment covers every variant:
- `task.dataset_split` (1, 2 or 3) replaces `{split}`: UCF-101 and HMDB-51 have three official train/test
  splits, each converted to its own folder by `data_tools.convert --split_number`;
- `task.label_fraction` (e.g. 0.01 or 0.1) replaces `{label_percent}` (1 or 10): the class-balanced subsets that
  `data_tools.make_subset --fraction` writes, one folder per fraction.

Settings the paper leaves open, and our choice:
- training crop: area 49-100% of the frame, aspect ratio 1:2 to 2:1 (Model Garden's video classification
  defaults), then resize to 224 and flip with probability 0.5;
- weight decay: none for linear evaluation (SimCLR's linear protocol); 1e-4 (SlowFast [17], which the paper
  follows for the supervised setting) when the whole network is trained;
- dropout 0.5 before the classifier whenever the whole network is trained (the paper states it for the
  supervised baseline, following [17]); none for linear evaluation;
- 5 linear warm-up epochs (paper Sec. 4.1, "all models") except in the semi-supervised protocol ("without
  warm-up").
"""
import dataclasses
import string
from typing import Dict, Optional, Sequence, Tuple, Union

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.configs import common

from official_cvrl.configs import backbones
from official_cvrl.configs import cvrl
from official_cvrl.dataloaders import feature_keys

SPLIT_PLACEHOLDER = 'split'
LABEL_PERCENT_PLACEHOLDER = 'label_percent'
_PLACEHOLDERS = (SPLIT_PLACEHOLDER, LABEL_PERCENT_PLACEHOLDER)
OFFICIAL_SPLITS = (1, 2, 3)
TEST_CROP_COUNTS = (1, 3)


@dataclasses.dataclass
class DataConfig(cfg.DataConfig):
  """Input config of the classification protocols: SequenceExample TFRecords with JPEG frames.

  Training takes one clip per video at a uniformly random start, a random crop (area and aspect ratio ranges)
  resized to `feature_shape[1:3]`, and a horizontal flip. Evaluation takes `num_test_clips` clips evenly spaced
  over the video, and from each `num_test_crops` squares whose side is the frame's short side (1: the centre one;
  3: both ends and the centre of the long side) resized to `feature_shape[1:3]`: the batch then holds
  `num_test_clips * num_test_crops` views per video.

  Attributes:
    name: dataset name, for logs.
    feature_shape: [frames per clip, crop height, crop width, 3]; height must equal width.
    temporal_stride: frame stride inside a clip.
    num_classes: number of classes; every label must lie in [0, num_classes).
    image_field_key / label_field_key: SequenceExample keys (Model Garden's by default).
    crop_area_range: training crop area as a fraction of the frame.
    crop_aspect_ratio_range: training crop width / height.
    flip_probability: probability of a horizontal flip of a training clip (0 for direction-sensitive classes).
    num_test_clips: evaluation clips per video.
    num_test_crops: evaluation crops per clip, 1 or 3.
  """
  name: Optional[str] = None
  file_type: str = 'tfrecord'
  feature_shape: Tuple[int, ...] = (32, 224, 224, 3)
  temporal_stride: int = 2
  num_classes: int = -1
  image_field_key: str = feature_keys.IMAGE_KEY
  label_field_key: str = feature_keys.LABEL_INDEX_KEY
  crop_area_range: Tuple[float, float] = (0.49, 1.0)
  crop_aspect_ratio_range: Tuple[float, float] = (0.5, 2.0)
  flip_probability: float = 0.5
  num_test_clips: int = 1
  num_test_crops: int = 1
  shuffle_buffer_size: int = 1024
  drop_remainder: bool = True

  def validate(self, key: str = 'data'):
    if len(self.feature_shape) != 4 or self.feature_shape[-1] != 3 or self.feature_shape[1] != self.feature_shape[2]:
      raise ValueError(f'{key}.feature_shape must be [frames, size, size, 3] (square crops), got '
                       f'{self.feature_shape}.')
    if self.feature_shape[0] < 1 or self.temporal_stride < 1:
      raise ValueError(f'{key}.feature_shape[0] (frames per clip) and {key}.temporal_stride must be >= 1, got '
                       f'{self.feature_shape[0]} and {self.temporal_stride}.')
    if self.num_classes < 2:
      raise ValueError(f'{key}.num_classes must be >= 2, got {self.num_classes}.')
    if not 0.0 <= self.flip_probability <= 1.0:
      raise ValueError(f'{key}.flip_probability={self.flip_probability} is not a probability in [0, 1].')
    low, high = self.crop_area_range
    if not 0.0 < low <= high <= 1.0:
      raise ValueError(f'{key}.crop_area_range={self.crop_area_range} must satisfy 0 < low <= high <= 1.')
    low, high = self.crop_aspect_ratio_range
    if not 0.0 < low <= high:
      raise ValueError(f'{key}.crop_aspect_ratio_range={self.crop_aspect_ratio_range} must satisfy 0 < low <= '
                       'high.')
    if self.num_test_clips < 1:
      raise ValueError(f'{key}.num_test_clips must be >= 1, got {self.num_test_clips}.')
    if self.num_test_crops not in TEST_CROP_COUNTS:
      raise ValueError(f'{key}.num_test_crops must be one of {TEST_CROP_COUNTS}, got {self.num_test_crops}.')


@dataclasses.dataclass
class ClassificationLosses(hyperparams.Config):
  """Loss settings: L2 weight decay of the trained kernels (applied by the task as a Keras regularizer)."""
  l2_weight_decay: float = 0.0


def _input_paths(input_path) -> Sequence[str]:
  if isinstance(input_path, str):
    return [input_path]
  if isinstance(input_path, (list, tuple)):
    return [str(p) for p in input_path]
  return []


def _placeholders(path: str) -> set:
  return {field for _, field, _, _ in string.Formatter().parse(path) if field is not None}


def format_label_percent(label_fraction: float) -> str:
  """0.01 -> '1', 0.1 -> '10', 0.005 -> '0.5': the percentage as written in subset folder names."""
  return f'{round(label_fraction * 100, 6):g}'


@dataclasses.dataclass
class ClassificationTask(cfg.TaskConfig):
  """Fields shared by the three protocols (not registered itself).

  Attributes:
    model: the classifier: backbone -> pool -> [L2 normalise] -> dropout -> linear layer.
    train_data: training input.
    validation_data: evaluation input (multi-clip / multi-crop).
    losses: weight decay.
    init_checkpoint: the pretrained backbone: a pretraining run's model_dir (its latest checkpoint) or a checkpoint
      path. Every backbone variable must be in it with the same shape (see `official_cvrl.utils.checkpoints`).
      Empty: random initialisation.
    dataset_split: official split (1, 2, 3) of UCF-101 / HMDB-51, substituted for `{split}` in both input paths;
      0 for datasets with a single split.
  """
  model: backbones.VideoClassifierModel = dataclasses.field(default_factory=backbones.VideoClassifierModel)
  train_data: DataConfig = dataclasses.field(default_factory=lambda: DataConfig(is_training=True))
  validation_data: DataConfig = dataclasses.field(
      default_factory=lambda: DataConfig(is_training=False, drop_remainder=False, num_test_clips=10,
                                         num_test_crops=3))
  losses: ClassificationLosses = dataclasses.field(default_factory=ClassificationLosses)
  dataset_split: int = 0

  def placeholder_values(self) -> Dict[str, str]:
    """Values of the `input_path` placeholders this task defines."""
    return {SPLIT_PLACEHOLDER: str(self.dataset_split)}

  def resolve_input_path(self, input_path: Union[str, Sequence[str]]) -> Union[str, Sequence[str]]:
    """`input_path` with its placeholders (`{split}`, `{label_percent}`) replaced by this task's values."""
    values = self.placeholder_values()
    if isinstance(input_path, str):
      return input_path.format(**values) if _placeholders(input_path) else input_path
    return [p.format(**values) if _placeholders(p) else p for p in input_path]

  def _check_placeholders(self) -> None:
    known = set(self.placeholder_values())
    uses_split = False
    for key, data in (('task.train_data', self.train_data), ('task.validation_data', self.validation_data)):
      for path in _input_paths(data.input_path):
        try:
          fields = _placeholders(path)
        except ValueError as e:
          raise ValueError(f'{key}.input_path={path!r} has unbalanced braces ({e}).') from None
        unknown = fields - known
        if unknown:
          raise ValueError(f'{key}.input_path={path!r} uses placeholder(s) {sorted(unknown)}; this task defines '
                           f'{sorted(known)}.')
        uses_split |= SPLIT_PLACEHOLDER in fields
    if uses_split and self.dataset_split not in OFFICIAL_SPLITS:
      raise ValueError(f'task.dataset_split={self.dataset_split}: the input paths contain {{split}}, so choose '
                       f'the official split, one of {OFFICIAL_SPLITS}.')
    if not uses_split and self.dataset_split != 0:
      raise ValueError(f'task.dataset_split={self.dataset_split} would have no effect: neither input path '
                       'contains {split}. Set it to 0, or write the split folder as {split} in the paths.')

  def validate(self):
    cvrl.validate_labelled_data(self.train_data, self.validation_data)
    if self.train_data.feature_shape[0] != self.validation_data.feature_shape[0]:
      raise ValueError('Training and evaluation clips must have the same number of frames, got '
                       f'{self.train_data.feature_shape[0]} and {self.validation_data.feature_shape[0]}.')
    if self.losses.l2_weight_decay < 0:
      raise ValueError(f'task.losses.l2_weight_decay must be >= 0, got {self.losses.l2_weight_decay}.')
    if self.model.model_type != 'cvrl_classifier':
      raise ValueError(f'task.model.model_type must be "cvrl_classifier", got "{self.model.model_type}".')
    self._check_placeholders()


@dataclasses.dataclass
class LinearEvalTask(ClassificationTask):
  """Linear evaluation: frozen backbone (weights and BN statistics), L2-normalised features, linear classifier."""
  model: backbones.VideoClassifierModel = dataclasses.field(
      default_factory=lambda: backbones.VideoClassifierModel(normalize_features=True))


@dataclasses.dataclass
class FineTuneTask(ClassificationTask):
  """Fine-tuning of every layer from a pretrained backbone (semi-supervised and transfer protocols).

  Attributes:
    label_fraction: share of the labelled training set used, in (0, 1]; substituted as a percentage for
      `{label_percent}` in `train_data.input_path` (the folder `data_tools.make_subset --fraction` wrote). 1 means
      the whole training set.
  """
  label_fraction: float = 1.0

  def placeholder_values(self) -> Dict[str, str]:
    values = super().placeholder_values()
    values[LABEL_PERCENT_PLACEHOLDER] = format_label_percent(self.label_fraction)
    return values

  def validate(self):
    super().validate()
    if not 0.0 < self.label_fraction <= 1.0:
      raise ValueError(f'task.label_fraction must be in (0, 1], got {self.label_fraction}.')
    uses_fraction = any(LABEL_PERCENT_PLACEHOLDER in _placeholders(p)
                        for p in _input_paths(self.train_data.input_path))
    if self.label_fraction != 1.0 and not uses_fraction:
      raise ValueError(f'task.label_fraction={self.label_fraction} would have no effect: '
                       'task.train_data.input_path does not contain {label_percent}. Point it at the subsets '
                       'written by data_tools.make_subset, e.g. ".../kinetics400_train_{label_percent}pct/train-*".')
    if any(LABEL_PERCENT_PLACEHOLDER in _placeholders(p) for p in _input_paths(self.validation_data.input_path)):
      raise ValueError('task.validation_data.input_path must not depend on {label_percent}: the evaluation set '
                       'is the same for every label fraction.')


@dataclasses.dataclass
class SupervisedTask(ClassificationTask):
  """The supervised baseline: the whole network trained from random initialisation."""

  def validate(self):
    super().validate()
    if self.init_checkpoint:
      raise ValueError(f'task.init_checkpoint={self.init_checkpoint!r}: the supervised baseline trains from '
                       'scratch. To start from a pretrained backbone use a cvrl_finetune_* or '
                       'cvrl_semi_supervised_* experiment.')


@dataclasses.dataclass(frozen=True)
class Protocol:
  """The paper's settings of one evaluation stage (Sec. 4.1).

  Attributes:
    task_config_cls: the task config class (selects the registered task).
    learning_rate: initial learning rate at `global_batch_size` (SGD momentum 0.9, cosine decay).
    epochs: training epochs.
    warmup_epochs: linear warm-up epochs.
    global_batch_size: training batch size.
    dropout_rate: dropout before the classifier.
    normalize_features: L2-normalise the pooled features.
    l2_weight_decay: weight decay of the trained kernels.
  """
  task_config_cls: type
  learning_rate: float
  epochs: int
  warmup_epochs: int = 5
  global_batch_size: int = 1024
  dropout_rate: float = 0.0
  normalize_features: bool = False
  l2_weight_decay: float = 0.0


def linear_eval_protocol(learning_rate: float = 32.0, epochs: int = 100, global_batch_size: int = 1024) -> Protocol:
  """Linear evaluation: Kinetics lr 32 at batch 1024 for 100 epochs; UCF-101 lr 0.8, HMDB-51 lr 0.2 at 128."""
  return Protocol(LinearEvalTask, learning_rate, epochs, global_batch_size=global_batch_size,
                  normalize_features=True)


def finetune_protocol(learning_rate: float = 0.16, epochs: int = 50, global_batch_size: int = 128,
                      warmup_epochs: int = 5) -> Protocol:
  """Fine-tuning: UCF-101 / HMDB-51 lr 0.16 at batch 128 for 50 epochs; semi-supervised lr 0.2 without warm-up."""
  return Protocol(FineTuneTask, learning_rate, epochs, warmup_epochs=warmup_epochs,
                  global_batch_size=global_batch_size, dropout_rate=0.5, l2_weight_decay=1e-4)


def semi_supervised_epochs(label_fraction: float) -> int:
  """The paper's schedule: 100 epochs on the 1% subset, 50 on the 10% subset."""
  if label_fraction <= 0.01:
    return 100
  return 50


def supervised_protocol() -> Protocol:
  """Supervised baseline: 200 epochs from scratch, lr 0.8 at batch 1024, dropout 0.5, no feature normalisation."""
  return Protocol(SupervisedTask, 0.8, 200, dropout_rate=0.5, l2_weight_decay=1e-4)


@dataclasses.dataclass(frozen=True)
class EvalDataset:
  """A dataset preset (name, example counts, classes, file patterns) and its default official split.

  Attributes:
    preset: the preset; its patterns may contain `{split}`.
    default_split: the split an experiment starts with (1 for UCF-101 / HMDB-51, 0 otherwise).
  """
  preset: cvrl.DatasetPreset
  default_split: int = 0


# Kinetics uses the pretraining presets; the semi-supervised subsets live in `<dataset>_train_<N>pct/` as written
# by `python -m data_tools.make_subset --fraction 0.01 --output_dir <root>/kinetics400_train_1pct`.
# UCF-101 / HMDB-51: one folder per official split, `data_tools.convert --split train|test --split_number N
# --output_dir <root>/ucf101_split<N>`. Example counts are split 1's (splits 2 and 3 differ by < 1%).
EVAL_DATASETS = {
    'kinetics400': EvalDataset(cvrl.DATASETS['kinetics400']),
    'kinetics600': EvalDataset(cvrl.DATASETS['kinetics600']),
    'ucf101': EvalDataset(cvrl.DatasetPreset('ucf101', 9537, 3783, 101, 'ucf101_split{split}/train-*',
                                             'ucf101_split{split}/test-*'), default_split=1),
    'hmdb51': EvalDataset(cvrl.DatasetPreset('hmdb51', 3570, 1530, 51, 'hmdb51_split{split}/train-*',
                                             'hmdb51_split{split}/test-*'), default_split=1),
}
SEMI_SUPERVISED_TRAIN_PATTERN = '{dataset}_train_{{label_percent}}pct/train-*'

# Default init_checkpoint of the full-scale experiments: the model_dir of the matching pretraining run. It fails
# with a clear error until replaced (YAML files and docs/evaluation.md show where).
PRETRAIN_MODEL_DIR = 'gs://YOUR_BUCKET/cvrl_pretrain_{dataset}'


def classification_experiment(dataset: EvalDataset,
                              protocol: Protocol,
                              data_root: str = 'gs://YOUR_BUCKET',
                              init_checkpoint: str = '',
                              label_fraction: float = 1.0,
                              train_examples: Optional[int] = None,
                              validation_batch_size: Optional[int] = None,
                              num_evaluations: int = 4) -> cfg.ExperimentConfig:
  """Builds one evaluation experiment at the paper's scale.

  Args:
    dataset: where to read and how many examples/classes.
    protocol: the stage's optimisation settings.
    data_root: folder the patterns are relative to.
    init_checkpoint: pretrained backbone ('' for the supervised baseline).
    label_fraction: share of the labelled training set (FineTuneTask only); below 1 the training set is the
      class-balanced subset folder.
    train_examples: training-set size for the step arithmetic (default: the preset's, times label_fraction).
    validation_batch_size: evaluation batch (videos; each gives 30 views). Default: batch / 16.
    num_evaluations: evaluations over the run (the last at the end); 10x3-view testing is costly.

  Returns:
    The experiment config.
  """
  preset = dataset.preset
  if train_examples is None:
    train_examples = max(1, int(round(preset.train_examples * label_fraction)))
  batch = protocol.global_batch_size
  per_epoch = cvrl.steps_per_epoch(train_examples, batch)
  total_steps = per_epoch * protocol.epochs
  train_pattern = preset.train_pattern
  if label_fraction != 1.0:
    train_pattern = SEMI_SUPERVISED_TRAIN_PATTERN.format(dataset=preset.name)
  task_kwargs = {}
  if protocol.task_config_cls is FineTuneTask:
    task_kwargs['label_fraction'] = label_fraction
  elif label_fraction != 1.0:
    raise ValueError(f'label_fraction={label_fraction} needs the fine-tuning protocol.')
  task = protocol.task_config_cls(
      model=backbones.VideoClassifierModel(
          dropout_rate=protocol.dropout_rate, normalize_features=protocol.normalize_features),
      train_data=DataConfig(
          name=preset.name, is_training=True, input_path=f'{data_root}/{train_pattern}',
          global_batch_size=batch, num_classes=preset.num_classes, feature_shape=(32, 224, 224, 3)),
      validation_data=DataConfig(
          name=preset.name, is_training=False, input_path=f'{data_root}/{preset.validation_pattern}',
          global_batch_size=validation_batch_size or max(1, batch // 16), num_classes=preset.num_classes,
          feature_shape=(32, 256, 256, 3), num_test_clips=10, num_test_crops=3, drop_remainder=False),
      losses=ClassificationLosses(l2_weight_decay=protocol.l2_weight_decay),
      init_checkpoint=init_checkpoint,
      dataset_split=dataset.default_split,
      **task_kwargs)
  warmup_steps = per_epoch * protocol.warmup_epochs
  evaluations = max(1, min(num_evaluations, protocol.epochs))
  return cvrl.TaskValidatedExperimentConfig(
      task=task,
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      trainer=cfg.TrainerConfig(
          train_steps=total_steps,
          # -1: every evaluation covers the whole test set exactly once (the eval dataset does not repeat).
          validation_steps=-1,
          validation_interval=per_epoch * (protocol.epochs // evaluations),
          steps_per_loop=per_epoch,
          summary_interval=per_epoch,
          checkpoint_interval=per_epoch,
          optimizer_config=cvrl.sgd_cosine_optimization(protocol.learning_rate, total_steps, warmup_steps)),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


def _pretrained(dataset_name: str) -> str:
  return PRETRAIN_MODEL_DIR.format(dataset=dataset_name)


@exp_factory.register_config_factory('cvrl_linear_eval_kinetics400')
def cvrl_linear_eval_kinetics400() -> cfg.ExperimentConfig:
  """Linear evaluation on Kinetics-400 (paper Table 2: 66.1% top-1 for R3D-50 pretrained 800 epochs on K400)."""
  return classification_experiment(EVAL_DATASETS['kinetics400'], linear_eval_protocol(),
                                   init_checkpoint=_pretrained('kinetics400'))


@exp_factory.register_config_factory('cvrl_linear_eval_kinetics600')
def cvrl_linear_eval_kinetics600() -> cfg.ExperimentConfig:
  """Linear evaluation on Kinetics-600 (paper Table 2: 70.4% top-1 for R3D-50 pretrained on K600)."""
  return classification_experiment(EVAL_DATASETS['kinetics600'], linear_eval_protocol(),
                                   init_checkpoint=_pretrained('kinetics600'))


def semi_supervised_experiment(dataset_name: str, label_fraction: float) -> cfg.ExperimentConfig:
  """Semi-supervised fine-tuning on a class-balanced label subset: lr 0.2, no warm-up, 100 (1%) / 50 (10%) ep."""
  protocol = finetune_protocol(learning_rate=0.2, epochs=semi_supervised_epochs(label_fraction),
                               global_batch_size=1024, warmup_epochs=0)
  return classification_experiment(EVAL_DATASETS[dataset_name], protocol, init_checkpoint=_pretrained(dataset_name),
                                   label_fraction=label_fraction)


@exp_factory.register_config_factory('cvrl_semi_supervised_kinetics400')
def cvrl_semi_supervised_kinetics400() -> cfg.ExperimentConfig:
  """Fine-tuning on 1% of Kinetics-400 labels (paper Table 3: 35.1%; 58.1% with 10%, see the 10pct YAML files)."""
  return semi_supervised_experiment('kinetics400', 0.01)


@exp_factory.register_config_factory('cvrl_semi_supervised_kinetics600')
def cvrl_semi_supervised_kinetics600() -> cfg.ExperimentConfig:
  """Fine-tuning on 1% of Kinetics-600 labels (paper Appendix B.1; 10% in the 10pct YAML files)."""
  return semi_supervised_experiment('kinetics600', 0.01)


@exp_factory.register_config_factory('cvrl_finetune_ucf101')
def cvrl_finetune_ucf101() -> cfg.ExperimentConfig:
  """Fine-tuning on UCF-101 (paper Table 4: 92.2% mean of 3 splits, 92.9% split 1, K400-pretrained R3D-50)."""
  return classification_experiment(EVAL_DATASETS['ucf101'], finetune_protocol(),
                                   init_checkpoint=_pretrained('kinetics400'))


@exp_factory.register_config_factory('cvrl_finetune_hmdb51')
def cvrl_finetune_hmdb51() -> cfg.ExperimentConfig:
  """Fine-tuning on HMDB-51 (paper Table 4: 66.7% mean of 3 splits, 67.9% split 1, K400-pretrained R3D-50)."""
  return classification_experiment(EVAL_DATASETS['hmdb51'], finetune_protocol(),
                                   init_checkpoint=_pretrained('kinetics400'))


@exp_factory.register_config_factory('cvrl_linear_eval_ucf101')
def cvrl_linear_eval_ucf101() -> cfg.ExperimentConfig:
  """Linear evaluation on UCF-101 (paper Table 4: 89.2% mean of 3 splits, 89.8% split 1, K400 pretraining)."""
  return classification_experiment(EVAL_DATASETS['ucf101'], linear_eval_protocol(0.8, 50, 128),
                                   init_checkpoint=_pretrained('kinetics400'))


@exp_factory.register_config_factory('cvrl_linear_eval_hmdb51')
def cvrl_linear_eval_hmdb51() -> cfg.ExperimentConfig:
  """Linear evaluation on HMDB-51 (paper Table 4: 57.3% mean of 3 splits, 58.3% split 1, K400 pretraining)."""
  return classification_experiment(EVAL_DATASETS['hmdb51'], linear_eval_protocol(0.2, 50, 128),
                                   init_checkpoint=_pretrained('kinetics400'))


@exp_factory.register_config_factory('cvrl_supervised_kinetics400')
def cvrl_supervised_kinetics400() -> cfg.ExperimentConfig:
  """Supervised R3D-50 from scratch on Kinetics-400 (paper Table 2: 76.0% top-1)."""
  return classification_experiment(EVAL_DATASETS['kinetics400'], supervised_protocol())


@exp_factory.register_config_factory('cvrl_supervised_kinetics600')
def cvrl_supervised_kinetics600() -> cfg.ExperimentConfig:
  """Supervised R3D-50 from scratch on Kinetics-600 (paper Table 2: 79.4% top-1)."""
  return classification_experiment(EVAL_DATASETS['kinetics600'], supervised_protocol())


# --- The embedded demo data (see configs/cvrl.py): 48-frame 32x32 videos of 8 motion classes. ---

DEMO_PRETRAIN_MODEL_DIR = 'demo_output/pretrain'


def demo_classification_data(split_pattern: str, is_training: bool, global_batch_size: int,
                             num_test_clips: int = 4) -> DataConfig:
  """Demo clips as in pretraining (8 frames, stride 2, 32x32); evaluation: `num_test_clips` clips x 1 crop.

  Flips stay off: the demo's classes are motion directions and rotation senses, which a flip swaps. The frames
  are square, so the single test crop is the whole frame.
  """
  return DataConfig(
      name=cvrl.DEMO_DATASET.name, is_training=is_training,
      input_path=f'{cvrl.DEMO_DATA_ROOT}/{split_pattern}', global_batch_size=global_batch_size,
      num_classes=cvrl.DEMO_DATASET.num_classes, feature_shape=(8, 32, 32, 3), temporal_stride=2,
      crop_area_range=(0.5, 1.0), crop_aspect_ratio_range=(0.75, 4.0 / 3.0), flip_probability=0.0,
      num_test_clips=1 if is_training else num_test_clips, num_test_crops=1,
      drop_remainder=is_training, shuffle_buffer_size=2000)


def demo_experiment(protocol: Protocol, init_checkpoint: str, train_steps: int,
                    learning_rate: float, warmup_steps: int) -> cfg.ExperimentConfig:
  """A demo-sized experiment: the pretraining demo's backbone, Adam (fast on a CPU), float32, 2 evaluations."""
  batch_size = 64
  config = classification_experiment(
      EvalDataset(cvrl.DEMO_DATASET),
      protocol, data_root=cvrl.DEMO_DATA_ROOT, init_checkpoint=init_checkpoint)
  config.task.model = backbones.VideoClassifierModel(
      backbone=cvrl.demo_backbone(), norm_activation=common.NormActivation(use_sync_bn=False),
      dropout_rate=protocol.dropout_rate, normalize_features=protocol.normalize_features)
  config.task.train_data = demo_classification_data(cvrl.DEMO_DATASET.train_pattern, True, batch_size)
  config.task.validation_data = demo_classification_data(cvrl.DEMO_DATASET.validation_pattern, False, batch_size)
  config.runtime.mixed_precision_dtype = 'float32'
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps,
      validation_steps=-1,
      validation_interval=train_steps,
      steps_per_loop=min(50, train_steps),
      summary_interval=min(50, train_steps),
      checkpoint_interval=train_steps,
      max_to_keep=1,
      optimizer_config=cvrl.adam_cosine_optimization(learning_rate, train_steps, warmup_steps))
  return config


@exp_factory.register_config_factory('cvrl_linear_eval_demo')
def cvrl_linear_eval_demo() -> cfg.ExperimentConfig:
  """Linear probe of the demo backbone (pretrained or random) on the demo data: ~1 minute on 2 CPU cores.

  The features are standardised before the classifier (`standardize_features`): a random backbone's
  L2-normalised features all point in nearly the same direction, and without it a 500-step probe of them is far
  from converged, which would overstate CVRL's margin.
  """
  config = demo_experiment(linear_eval_protocol(), DEMO_PRETRAIN_MODEL_DIR, train_steps=500,
                           learning_rate=0.05, warmup_steps=0)
  config.task.model.standardize_features = True
  return config


@exp_factory.register_config_factory('cvrl_finetune_demo')
def cvrl_finetune_demo() -> cfg.ExperimentConfig:
  """Fine-tuning of the pretrained demo backbone on the demo data's labels."""
  return demo_experiment(finetune_protocol(), DEMO_PRETRAIN_MODEL_DIR, train_steps=300,
                         learning_rate=1e-3, warmup_steps=25)


@exp_factory.register_config_factory('cvrl_supervised_demo')
def cvrl_supervised_demo() -> cfg.ExperimentConfig:
  """The demo network trained from scratch with labels: the upper bound of the demo's linear evaluation."""
  return demo_experiment(supervised_protocol(), '', train_steps=300, learning_rate=1e-3, warmup_steps=25)
