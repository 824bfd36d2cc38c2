"""Config and registered experiments of spatio-temporal action detection on AVA (paper Sec. 4.1, Table 5).

The paper fine-tunes the CVRL-pretrained R3D-50 on AVA v2.2 (60 evaluation classes) with person boxes: 12
epochs, learning rate 0.2 at 32 videos (keyframes) per batch, divided by 10 at epochs 8 and 11 (Model Garden's
'stepwise' schedule), clips of 32 frames at stride 2 around each keyframe, and reports frame-level mAP at IoU 0.5
(CVRL 16.3 vs 14.0 for ImageNet-inflated weights).

Settings the paper leaves open, and our choice (those of SlowFast's AVA recipe, which the paper follows for the
detection head):
- res5 spatial stride 1 with dilation 2 (`backbone.r3d.res5_dilation: 2`), so boxes pool from a stride-16 map;
- frames resized to 256x256 (boxes are normalised, so they follow); in training a random crop of 0.8-1.0 of each
  side first (SlowFast's scale jitter: short side 256-320, fixed crop), boxes less than a quarter inside dropped,
  left-right flip 0.5, ground-truth boxes jittered by up to 5% of their size;
- evaluation scores the person proposals whose detector score is >= 0.8;
- dropout 0.5 before the classifier, weight decay 1e-7, SGD momentum 0.9 without warm-up.

Experiments: `cvrl_action_detection_ava` (the paper's) and `cvrl_action_detection_demo` (the synthetic detection
data of `data_tools.synthetic.synthetic_detection`, sized for a CPU).
"""
import dataclasses
from typing import Optional, Tuple

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.vision.configs import common

from official_cvrl.configs import backbones
from official_cvrl.configs import cvrl
from official_cvrl.dataloaders import feature_keys


@dataclasses.dataclass
class ActionDetectionModel(hyperparams.Config):
  """The detector: backbone -> temporal average pool -> RoIAlign -> spatial max pool -> dropout -> classifier.

  Attributes:
    model_type: key of the registered builder ('cvrl_action_detection').
    backbone: the video encoder; same variables as in pretraining, so a CVRL checkpoint restores into it.
    norm_activation: batch norm settings of the encoder (CVRL's momentum 0.9, epsilon 1e-5, as pretraining).
    roi_output_size: side of the RoIAlign grid per box.
    dropout_rate: dropout on the pooled box features, in [0, 1).
  """
  model_type: str = 'cvrl_action_detection'
  backbone: backbones.Backbone3D = dataclasses.field(
      default_factory=lambda: backbones.Backbone3D(type='r3d', r3d=backbones.R3D(res5_dilation=2)))
  norm_activation: common.NormActivation = dataclasses.field(
      default_factory=lambda: backbones.cvrl_norm_activation(use_sync_bn=False))
  roi_output_size: int = 7
  dropout_rate: float = 0.5


@dataclasses.dataclass
class DetectionDataConfig(cfg.DataConfig):
  """Keyframe records (see `official_cvrl.dataloaders.detection_keys`).

  Attributes:
    name: dataset name, for logs.
    feature_shape: [frames per clip, height, width, 3]; frames are resized to height x width.
    temporal_stride: stride between the clip's frames, centred on the keyframe.
    num_classes: action classes; every class index in the records must be below it.
    max_num_boxes: rows of the padded box tensors (ground truth in training; proposals and ground truth in
      evaluation, where a keyframe with more ground-truth boxes is an error).
    box_jitter: training jitter of ground-truth boxes, as a fraction of their size.
    crop_scale_range: training scale jitter: a crop whose sides are a random fraction in this range of the frame's
      is cut from every frame of the clip before resizing ((0.8, 1.0) matches SlowFast's short side 256-320 with a
      fixed-size crop; (1, 1) keeps the whole frame).
    min_visible_box_fraction: a training box with less of its area inside the crop is dropped.
    flip_probability: probability of flipping a training clip and its boxes left-right.
    proposal_score_threshold: evaluation classifies the proposals with at least this detector score.
    image_field_key: SequenceExample key of the frames.
  """
  name: Optional[str] = None
  file_type: str = 'tfrecord'
  feature_shape: Tuple[int, ...] = (32, 256, 256, 3)
  temporal_stride: int = 2
  num_classes: int = 60
  max_num_boxes: int = 32
  box_jitter: float = 0.05
  crop_scale_range: Tuple[float, float] = (0.8, 1.0)
  min_visible_box_fraction: float = 0.25
  flip_probability: float = 0.5
  proposal_score_threshold: float = 0.8
  image_field_key: str = feature_keys.IMAGE_KEY
  shuffle_buffer_size: int = 1024
  drop_remainder: bool = True

  def validate(self, key: str = 'data'):
    if len(self.feature_shape) != 4 or self.feature_shape[-1] != 3 or min(self.feature_shape) < 1:
      raise ValueError(f'{key}.feature_shape must be [frames, height, width, 3], got {self.feature_shape}.')
    if self.temporal_stride < 1 or self.max_num_boxes < 1:
      raise ValueError(f'{key}.temporal_stride and {key}.max_num_boxes must be >= 1.')
    if self.num_classes < 1:
      raise ValueError(f'{key}.num_classes must be >= 1, got {self.num_classes}.')
    if self.box_jitter < 0 or not 0.0 <= self.flip_probability <= 1.0:
      raise ValueError(f'{key}.box_jitter must be >= 0 and {key}.flip_probability in [0, 1].')
    low, high = self.crop_scale_range
    if not 0.0 < low <= high <= 1.0:
      raise ValueError(f'{key}.crop_scale_range must be (low, high) with 0 < low <= high <= 1, got '
                       f'{tuple(self.crop_scale_range)}.')
    if not 0.0 <= self.min_visible_box_fraction <= 1.0:
      raise ValueError(f'{key}.min_visible_box_fraction must be in [0, 1], got {self.min_visible_box_fraction}.')


@dataclasses.dataclass
class DetectionEvaluation(hyperparams.Config):
  """Frame-level mAP settings (official AVA protocol; see `official_cvrl.evaluation.ava_frame_map`).

  Attributes:
    iou_threshold: IoU of a true positive (official: 0.5).
    max_detections_per_keyframe: highest-scoring (box, class) detections kept per keyframe (official: 50).
    label_map_path: optional AVA label map (`.pbtxt`) of the evaluation classes, in class-index order (the one
      `data_tools.ava` writes): names and AVA action ids in the per-class AP file. Empty: indices only.
    excluded_timestamps_path: optional AVA excluded-timestamps CSV (`video_id,timestamp`); those keyframes are
      left out of the mAP (`data_tools.ava` already skips them when converting).
  """
  iou_threshold: float = 0.5
  max_detections_per_keyframe: int = 50
  label_map_path: str = ''
  excluded_timestamps_path: str = ''


@dataclasses.dataclass
class DetectionLosses(hyperparams.Config):
  """Weight decay of the kernels (a Keras L2 regularizer, as in the other tasks)."""
  l2_weight_decay: float = 1e-7


@dataclasses.dataclass
class ActionDetectionTask(cfg.TaskConfig):
  """The action detection task.

  Attributes:
    model: the detector.
    train_data / validation_data: keyframe records.
    losses: weight decay.
    evaluation: frame-mAP settings.
    init_checkpoint: the CVRL pretraining run (model_dir or checkpoint prefix) whose backbone is restored
      strictly; '' for a random initialisation.
  """
  model: ActionDetectionModel = dataclasses.field(default_factory=ActionDetectionModel)
  train_data: DetectionDataConfig = dataclasses.field(
      default_factory=lambda: DetectionDataConfig(is_training=True))
  validation_data: DetectionDataConfig = dataclasses.field(
      default_factory=lambda: DetectionDataConfig(is_training=False, drop_remainder=False, max_num_boxes=64))
  losses: DetectionLosses = dataclasses.field(default_factory=DetectionLosses)
  evaluation: DetectionEvaluation = dataclasses.field(default_factory=DetectionEvaluation)

  def validate(self):
    cvrl.validate_labelled_data(self.train_data, self.validation_data)
    if self.model.model_type != 'cvrl_action_detection':
      raise ValueError(f'task.model.model_type must be "cvrl_action_detection", got "{self.model.model_type}".')
    if self.losses.l2_weight_decay < 0:
      raise ValueError(f'task.losses.l2_weight_decay must be >= 0, got {self.losses.l2_weight_decay}.')
    if not 0.0 < self.evaluation.iou_threshold <= 1.0:
      raise ValueError(f'task.evaluation.iou_threshold must be in (0, 1], got {self.evaluation.iou_threshold}.')
    if self.evaluation.max_detections_per_keyframe < 0:
      raise ValueError('task.evaluation.max_detections_per_keyframe must be >= 0 (0: keep all).')


def stepwise_sgd_optimization(learning_rate: float, boundaries, momentum: float = 0.9
                              ) -> optimization.OptimizationConfig:
  """SGD with momentum; the learning rate divided by 10 at each step boundary."""
  values = [round(learning_rate * 0.1 ** i, 12) for i in range(len(boundaries) + 1)]
  return optimization.OptimizationConfig({
      'optimizer': {'type': 'sgd', 'sgd': {'momentum': momentum, 'nesterov': False}},
      'learning_rate': {'type': 'stepwise', 'stepwise': {'boundaries': list(boundaries), 'values': values}},
  })


# AVA v2.2: 235 training and 64 validation movies, keyframes at seconds 902-1798 (897 per movie). The counts
# below are those upper bounds; recompute the steps from the record counts `data_tools.ava` reports.
AVA = cvrl.DatasetPreset('ava_v2.2', 235 * 897, 64 * 897, 60, 'ava_v2.2/train-*', 'ava_v2.2/val-*')
AVA_LABEL_MAP = 'ava_v2.2/ava_action_list_v2.2_for_activitynet_2019.pbtxt'
AVA_EXCLUDED_TIMESTAMPS = 'ava_v2.2/ava_val_excluded_timestamps_v2.2.csv'


def action_detection_experiment(preset: cvrl.DatasetPreset,
                                data_root: str = 'gs://YOUR_BUCKET',
                                init_checkpoint: str = '',
                                global_batch_size: int = 32,
                                learning_rate: float = 0.2,
                                epochs: int = 12,
                                decay_epochs: Tuple[int, ...] = (8, 11),
                                num_evaluations: int = 3) -> cfg.ExperimentConfig:
  """Builds the paper's AVA fine-tuning experiment on `preset`.

  Args:
    preset: where to read, example counts (for the steps) and classes.
    data_root: folder the patterns are relative to.
    init_checkpoint: the CVRL pretraining run.
    global_batch_size: keyframes per step (paper: 32).
    learning_rate: initial learning rate (paper: 0.2).
    epochs: training epochs (paper: 12).
    decay_epochs: epochs at which the learning rate is divided by 10 (paper: 8 and 11).
    num_evaluations: evaluations over the run, the last at the end.

  Returns:
    The experiment config.
  """
  per_epoch = cvrl.steps_per_epoch(preset.train_examples, global_batch_size)
  total_steps = per_epoch * epochs
  task = ActionDetectionTask(
      train_data=DetectionDataConfig(
          name=preset.name, is_training=True, input_path=f'{data_root}/{preset.train_pattern}',
          global_batch_size=global_batch_size, num_classes=preset.num_classes),
      validation_data=DetectionDataConfig(
          name=preset.name, is_training=False, input_path=f'{data_root}/{preset.validation_pattern}',
          global_batch_size=global_batch_size, num_classes=preset.num_classes, max_num_boxes=64,
          drop_remainder=False),
      init_checkpoint=init_checkpoint)
  return cvrl.TaskValidatedExperimentConfig(
      task=task,
      runtime=cfg.RuntimeConfig(mixed_precision_dtype='bfloat16'),
      trainer=cfg.TrainerConfig(
          train_steps=total_steps,
          validation_steps=-1,  # The whole validation set once per evaluation (the dataset does not repeat).
          validation_interval=max(1, total_steps // num_evaluations),
          steps_per_loop=min(per_epoch, 1000),
          summary_interval=min(per_epoch, 1000),
          checkpoint_interval=per_epoch,
          optimizer_config=stepwise_sgd_optimization(learning_rate, [per_epoch * e for e in decay_epochs])),
      restrictions=[
          'task.train_data.is_training != None',
          'task.validation_data.is_training != None',
      ])


@exp_factory.register_config_factory('cvrl_action_detection_ava')
def cvrl_action_detection_ava() -> cfg.ExperimentConfig:
  """AVA v2.2 detection from the K400 CVRL R3D-50 (paper Table 5: 16.3 frame mAP@0.5)."""
  config = action_detection_experiment(AVA, init_checkpoint='gs://YOUR_BUCKET/cvrl_pretrain_kinetics400')
  config.task.evaluation.label_map_path = f'gs://YOUR_BUCKET/{AVA_LABEL_MAP}'
  config.task.evaluation.excluded_timestamps_path = f'gs://YOUR_BUCKET/{AVA_EXCLUDED_TIMESTAMPS}'
  return config


# The synthetic detection data (`python -m data_tools.synthetic.synthetic_detection`): 64x64 keyframe clips in which the
# pretraining demo's objects do its eight motion actions.
DEMO_DETECTION_ROOT = 'demo_output/detection_tfrecords'
# Few labelled keyframes, as in the semi-supervised protocol: that is where pretraining pays (docs/action_detection.md).
DEMO_DETECTION = cvrl.DatasetPreset('cvrl_detection_demo', 128, 512, 8, 'train-*', 'val-*')


@exp_factory.register_config_factory('cvrl_action_detection_demo')
def cvrl_action_detection_demo() -> cfg.ExperimentConfig:
  """The demo detector (the pretraining demo's backbone with res5 dilation) on the synthetic detection data."""
  config = action_detection_experiment(DEMO_DETECTION, data_root=DEMO_DETECTION_ROOT, global_batch_size=16,
                                       init_checkpoint='demo_output/pretrain')
  backbone = cvrl.demo_backbone()
  backbone.r3d.res5_dilation = 2
  config.task.model = ActionDetectionModel(
      backbone=backbone, norm_activation=common.NormActivation(use_sync_bn=False), dropout_rate=0.2)
  for data in (config.task.train_data, config.task.validation_data):
    data.feature_shape = (8, 64, 64, 3)
    data.max_num_boxes = 6  # Up to 3 actors, a bystander and a background proposal.
    # The demo's actions are motion directions, which a flip swaps. No crop: the actors are small, and the
    # pretraining demo saw them at this pixel size.
    data.flip_probability = 0.0
    data.crop_scale_range = (1.0, 1.0)
    data.shuffle_buffer_size = 1024
  config.task.losses.l2_weight_decay = 0.0
  config.runtime.mixed_precision_dtype = 'float32'
  # 300 steps: from the same checkpoints, 400 gave the same frame mAP to within 0.2 points over three seeds
  # (docs/benchmarks.md, "make demo, all in"); 200 lost 2 points pretrained and 18-22 from random init.
  train_steps = 300
  config.trainer = cfg.TrainerConfig(
      train_steps=train_steps, validation_steps=-1, validation_interval=train_steps, steps_per_loop=50,
      summary_interval=50, checkpoint_interval=train_steps, max_to_keep=1,
      optimizer_config=cvrl.adam_cosine_optimization(1e-3, train_steps, warmup_steps=20))
  return config
