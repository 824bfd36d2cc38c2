"""Spatio-temporal action detection (AVA) as a Model Garden task.

Glue only: the model comes from the registered 'cvrl_action_detection' builder, the pipeline from
`dataloaders.detection_input`, the metric from `evaluation.ava_frame_map`, the strict backbone restore from
`utils.checkpoints`.

Training: sigmoid cross-entropy between each (jittered) ground-truth box's logits and its multi-hot actions,
averaged over classes and over the valid (unpadded) boxes of the replica's batch.
Validation: each proposal is scored (sigmoid per class); the steps return the scores with the proposals, the
ground truth and the keyframe keys; `aggregate_logs` feeds them to a `FrameMAPEvaluator` and
`reduce_aggregated_logs` reports `frame_map` and writes the per-class AP table to
`<model_dir>/frame_map/per_class_ap-<step>.tsv`.
"""
import os
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import task_factory
from official.vision.modeling import factory_3d

from official_cvrl.configs import action_detection as detection_cfg
from official_cvrl.dataloaders import detection_input
from official_cvrl.evaluation import ava_frame_map
from official_cvrl.modeling import action_detection_model  # pylint: disable=unused-import  (registers the builder)
from official_cvrl.tasks import logged_terms
from official_cvrl.tasks import optimization_step
from official_cvrl.tasks import pretrain
from official_cvrl.utils import checkpoints
from official_cvrl.utils import errors

_EVAL_OUTPUTS = 'frame_map_inputs'
_PER_CLASS_DIR = 'frame_map'


def sigmoid_cross_entropy(classes: tf.Tensor, logits: tf.Tensor, box_mask: tf.Tensor) -> tf.Tensor:
  """Mean over classes and valid boxes of the sigmoid cross-entropy.

  Args:
    classes: float32 `[B, N, C]` multi-hot targets.
    logits: float32 `[B, N, C]`.
    box_mask: float32 `[B, N]`, 1 for real boxes, 0 for padding.

  Returns:
    Scalar; 0 when there is no valid box.
  """
  per_box = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=classes, logits=logits), axis=-1)
  return tf.math.divide_no_nan(tf.reduce_sum(per_box * box_mask), tf.reduce_sum(box_mask))


def _to_numpy(value) -> np.ndarray:
  """A step output (a tensor, or a tuple of per-replica tensors) as one array, replicas concatenated."""
  if isinstance(value, (list, tuple)):
    return np.concatenate([np.asarray(v) for v in value], axis=0)
  return np.asarray(value)


@task_factory.register_task_cls(detection_cfg.ActionDetectionTask)
class ActionDetectionTask(base_task.Task):
  """Fine-tunes a (CVRL-pretrained) backbone with an RoI head for multi-label person actions."""

  def __init__(self, params: detection_cfg.ActionDetectionTask, logging_dir: Optional[str] = None,
               name: Optional[str] = None):
    try:
      params.validate()
    except ValueError as e:
      raise errors.UserInputError(str(e)) from None
    super().__init__(params, logging_dir=logging_dir, name=name)
    self._class_names = self._read_class_names()
    evaluation = params.evaluation
    self._excluded = (ava_frame_map.read_excluded_timestamps(evaluation.excluded_timestamps_path)
                      if evaluation.excluded_timestamps_path else set())

  def _read_class_names(self) -> Dict[int, str]:
    path = self.task_config.evaluation.label_map_path
    if not path:
      return {}
    try:
      items = ava_frame_map.read_label_map_pbtxt(path)
    except (FileNotFoundError, ValueError) as e:
      raise errors.UserInputError(f'task.evaluation.label_map_path: {e}') from None
    if len(items) != self.num_classes:
      raise errors.UserInputError(
          f'task.evaluation.label_map_path={path!r} lists {len(items)} classes but num_classes is '
          f'{self.num_classes}: use the label map data_tools.ava wrote for these records.')
    return {index: f'{action_id}:{name}' for index, (action_id, name) in enumerate(items)}

  @property
  def num_classes(self) -> int:
    return self.task_config.train_data.num_classes

  def build_model(self) -> tf_keras.Model:
    train, val = self.task_config.train_data.feature_shape, self.task_config.validation_data.feature_shape
    shape = [a if a == b else None for a, b in zip(train, val)]
    model = factory_3d.build_model(
        self.task_config.model.model_type,
        input_specs=tf_keras.layers.InputSpec(shape=[None] + shape),
        model_config=self.task_config.model,
        num_classes=self.num_classes,
        l2_regularizer=pretrain.build_l2_regularizer(self.task_config.losses.l2_weight_decay))
    # Create every variable now, so the checkpoint restore and the optimizer see them.
    model({'image': tf.zeros([1] + list(train), tf.float32), 'boxes': tf.constant([[[0.0, 0.0, 1.0, 1.0]]])},
          training=False)
    logging.info('Action detector built: %d trainable parameters.',
                 sum(int(tf.size(v)) for v in model.trainable_variables))
    return model

  def initialize(self, model: tf_keras.Model) -> None:
    """Restores the pretrained backbone (strictly) when the run starts without a checkpoint of its own."""
    if not self.task_config.init_checkpoint:
      logging.warning('task.init_checkpoint is empty: training the detector from a random backbone.')
      return
    path = checkpoints.restore_backbone(model.backbone, self.task_config.init_checkpoint)
    logging.info('Restored the backbone from %s.', path)

  def build_inputs(self, params: detection_cfg.DetectionDataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    key = 'task.train_data' if params.is_training else 'task.validation_data'
    parser = detection_input.Parser(
        num_frames=params.feature_shape[0],
        temporal_stride=params.temporal_stride,
        image_size=params.feature_shape[1:3],
        num_classes=params.num_classes,
        max_num_boxes=params.max_num_boxes,
        box_jitter=params.box_jitter,
        flip_probability=params.flip_probability,
        proposal_score_threshold=params.proposal_score_threshold,
        image_key=params.image_field_key,
        crop_scale_range=tuple(params.crop_scale_range),
        min_visible_box_fraction=params.min_visible_box_fraction)
    return pretrain.build_video_dataset(
        params, parser.parse_fn(params.is_training), None, key=key, input_context=input_context,
        decoder_fn=detection_input.Decoder(image_key=params.image_field_key).decode)

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    """Training: a mean of every scalar `build_losses` logs; validation reports frame mAP (`aggregate_logs`)."""
    if not training:
      return []
    data = self.task_config.train_data
    boxes = tf.TensorSpec([2, data.max_num_boxes, data.num_classes], tf.float32)
    return logged_terms.build_metrics(self.build_losses, boxes, boxes, tf.TensorSpec([2, data.max_num_boxes]),
                                      aux_losses=None)

  def build_losses(self, classes: tf.Tensor, logits: tf.Tensor, box_mask: tf.Tensor,
                   aux_losses: Optional[List[tf.Tensor]] = None) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Sigmoid cross-entropy over the valid boxes plus weight decay; returns the total and the logged terms."""
    class_loss = sigmoid_cross_entropy(classes, logits, box_mask)
    regularization = tf.add_n([tf.cast(l, tf.float32) for l in aux_losses]) if aux_losses else tf.constant(0.0)
    return class_loss + regularization, {'class_loss': class_loss, 'regularization_loss': regularization}

  @staticmethod
  def _model_inputs(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    # uint8 clips -> [0, 1], the pretraining scale.
    return {'image': tf.cast(features['image'], tf.float32) / 255.0, 'boxes': features['boxes']}

  def train_step(self, inputs, model: tf_keras.Model, optimizer: tf_keras.optimizers.Optimizer,
                 metrics=None) -> Dict[str, Any]:
    features, labels = inputs

    def loss_fn():
      logits = tf.cast(model(self._model_inputs(features), training=True), tf.float32)
      loss, logs = self.build_losses(labels['classes'], logits, features['box_mask'], model.losses)
      return pretrain.assert_finite_loss(loss), logs

    loss, logs = optimization_step.minimize(loss_fn, model, optimizer)
    logged_terms.update(metrics, logs)
    logs[self.loss] = loss
    return logs

  def inference_step(self, features: Dict[str, tf.Tensor], model: tf_keras.Model) -> tf.Tensor:
    """Per-class probabilities float32 `[B, N, num_classes]` of the boxes in `features`."""
    return tf.nn.sigmoid(tf.cast(model(self._model_inputs(features), training=False), tf.float32))

  def validation_step(self, inputs, model: tf_keras.Model, metrics=None) -> Dict[str, Any]:
    """Scores the proposals; returns them with the ground truth for `aggregate_logs` (no validation loss)."""
    features, labels = inputs
    scores = self.inference_step(features, model)
    return {_EVAL_OUTPUTS: {
        'keyframe_key': labels['keyframe_key'],
        'boxes': features['boxes'],
        'box_mask': features['box_mask'],
        'scores': scores,
        'gt_boxes': labels['gt_boxes'],
        'gt_classes': labels['gt_classes'],
        'gt_mask': labels['gt_mask'],
    }}

  def new_evaluator(self) -> ava_frame_map.FrameMAPEvaluator:
    evaluation = self.task_config.evaluation
    return ava_frame_map.FrameMAPEvaluator(
        class_ids=list(range(self.num_classes)),
        class_names=self._class_names,
        iou_threshold=evaluation.iou_threshold,
        max_detections_per_keyframe=evaluation.max_detections_per_keyframe,
        excluded_keyframes=self._excluded)

  def aggregate_logs(self, state: Optional[ava_frame_map.FrameMAPEvaluator] = None,
                     step_outputs: Optional[Dict[str, Any]] = None) -> ava_frame_map.FrameMAPEvaluator:
    if state is None:
      state = self.new_evaluator()
    outputs = {k: _to_numpy(v) for k, v in step_outputs[_EVAL_OUTPUTS].items()}
    for i, key in enumerate(outputs['keyframe_key']):
      key = key.decode() if isinstance(key, bytes) else str(key)
      gt_rows = outputs['gt_mask'][i] > 0
      box_index, class_index = np.nonzero(outputs['gt_classes'][i][gt_rows] > 0)
      state.add_groundtruth(key, outputs['gt_boxes'][i][gt_rows][box_index], class_index)
      rows = outputs['box_mask'][i] > 0
      state.add_box_scores(key, outputs['boxes'][i][rows], outputs['scores'][i][rows])
    return state

  def reduce_aggregated_logs(self, aggregated_logs: ava_frame_map.FrameMAPEvaluator,
                             global_step: Optional[tf.Tensor] = None) -> Dict[str, float]:
    result = aggregated_logs.evaluate()
    if self.logging_dir:
      step = int(global_step.numpy()) if global_step is not None else 0
      path = os.path.join(self.logging_dir, _PER_CLASS_DIR, f'per_class_ap-{step}.tsv')
      ava_frame_map.write_per_class_ap(result, path)
      logging.info('Frame mAP@0.5 %.4f over %d keyframes; per-class AP in %s.', result.mean_ap,
                   result.num_keyframes, path)
    return {'frame_map': result.mean_ap}
