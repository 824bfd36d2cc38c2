"""The CVRL evaluation protocols as Model Garden tasks: linear evaluation, fine-tuning, supervised baseline.

Glue only: the model comes from the registered 'cvrl_classifier' builder, the pipeline from
`dataloaders.classification_input`, view averaging from `ops.multi_view`, the strict backbone restore from
`utils.checkpoints`. The three tasks differ in two switches:

| task (config class)  | backbone                    | init_checkpoint                |
| -------------------- | --------------------------- | ------------------------------ |
| `LinearEvalTask`     | frozen: weights and BN stats | restored ('' = random)         |
| `FineTuneTask`       | trained                     | restored ('' = random)         |
| `SupervisedTask`     | trained                     | none (rejected by `validate`)  |

Freezing sets `backbone.trainable = False` when the model is built: the optimizer then never sees the backbone's
variables, and tf_keras runs a non-trainable BatchNormalization in inference mode, so its moving statistics stay
those of the checkpoint even though the train step calls the model with `training=True` (the classifier's dropout
still trains).

Metrics (train and validation): `accuracy` (top-1) and `top_5_accuracy` (top-min(5, classes)). In validation they
score the softmax averaged over the `num_test_clips * num_test_crops` views of each video, the paper's protocol.
"""
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import task_factory
from official.vision.modeling import factory_3d

from official_cvrl.configs import video_classification as vc_cfg
from official_cvrl.dataloaders import classification_input
from official_cvrl.modeling import factory as _model_factory  # pylint: disable=unused-import  (registers builders)
from official_cvrl.ops import multi_view
from official_cvrl.tasks import logged_terms
from official_cvrl.tasks import optimization_step
from official_cvrl.tasks import pretrain
from official_cvrl.utils import checkpoints
from official_cvrl.utils import errors

_CLASSIFIER_LAYER = 'classifier'


class VideoClassificationTask(base_task.Task):
  """Shared implementation; the registered subclasses set `freeze_backbone` / `uses_init_checkpoint`."""

  freeze_backbone = False
  uses_init_checkpoint = True

  def __init__(self, params: vc_cfg.ClassificationTask, logging_dir: Optional[str] = None, name: Optional[str] = None):
    try:
      params.validate()
    except ValueError as e:
      raise errors.UserInputError(str(e)) from None
    super().__init__(params, logging_dir=logging_dir, name=name)

  @property
  def num_classes(self) -> int:
    return self.task_config.train_data.num_classes

  @property
  def num_test_views(self) -> int:
    data = self.task_config.validation_data
    return data.num_test_clips * data.num_test_crops

  def _input_shape(self) -> List[Optional[int]]:
    """[T, H, W, 3] with None where training and evaluation clips differ (e.g. 224 vs 256 crops)."""
    return [a if a == b else None for a, b in zip(self.task_config.train_data.feature_shape,
                                                  self.task_config.validation_data.feature_shape)]

  def build_model(self) -> tf_keras.Model:
    input_specs = tf_keras.layers.InputSpec(shape=[None] + self._input_shape())
    model = factory_3d.build_model(
        self.task_config.model.model_type,
        input_specs=input_specs,
        model_config=self.task_config.model,
        num_classes=self.num_classes,
        l2_regularizer=pretrain.build_l2_regularizer(self.task_config.losses.l2_weight_decay))
    # The model is a Keras functional model: its variables exist once it is built, before any call, so the
    # checkpoint restore in `initialize` and the optimizer see them.
    if self.freeze_backbone:
      model.backbone.trainable = False
    logging.info('Classifier built: %d variables, %d trainable parameters (backbone %s).', len(model.variables),
                 sum(int(tf.size(v)) for v in model.trainable_variables),
                 'frozen' if self.freeze_backbone else 'trained')
    return model

  def initialize(self, model: tf_keras.Model) -> None:
    """Restores the pretrained backbone (strictly) when the run starts without a checkpoint of its own."""
    if not self.uses_init_checkpoint:
      return
    if not self.task_config.init_checkpoint:
      logging.warning('task.init_checkpoint is empty: evaluating a randomly initialised backbone.')
      return
    path = checkpoints.restore_backbone(model.backbone, self.task_config.init_checkpoint)
    logging.info('Restored the backbone from %s.', path)

  def build_inputs(self, params: vc_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    parser = classification_input.Parser(
        num_frames=params.feature_shape[0],
        temporal_stride=params.temporal_stride,
        crop_size=params.feature_shape[1],
        num_classes=params.num_classes,
        crop_area_range=params.crop_area_range,
        crop_aspect_ratio_range=params.crop_aspect_ratio_range,
        flip_probability=params.flip_probability,
        num_test_clips=params.num_test_clips,
        num_test_crops=params.num_test_crops,
        image_key=params.image_field_key,
        label_key=params.label_field_key)
    key = 'task.train_data' if params.is_training else 'task.validation_data'
    params = params.replace(input_path=self.task_config.resolve_input_path(params.input_path))
    return pretrain.build_video_dataset(params, parser.parse_fn(params.is_training),
                                        classification_input.PostBatchProcessor(), key=key,
                                        input_context=input_context)

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    metrics = [
        tf_keras.metrics.SparseCategoricalAccuracy(name='accuracy'),
        tf_keras.metrics.SparseTopKCategoricalAccuracy(k=min(5, self.num_classes), name='top_5_accuracy'),
    ]
    if training:  # The terms of `build_losses` (class loss, L2, a subclass's own), reported while training.
      metrics += logged_terms.build_metrics(
          self.build_losses, tf.TensorSpec([2], tf.int32), tf.TensorSpec([2, self.num_classes], tf.float32),
          aux_losses=None)
    return metrics

  def _regularization_losses(self, model: tf_keras.Model) -> List[tf.Tensor]:
    # A frozen backbone's weight decay is a constant: leave it out of the loss that is logged and optimised.
    layer = model.get_layer(_CLASSIFIER_LAYER) if self.freeze_backbone else model
    return list(layer.losses)

  def build_losses(self, labels: tf.Tensor, probabilities: tf.Tensor,
                   aux_losses: Optional[List[tf.Tensor]] = None) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Cross-entropy of the (view-averaged) class probabilities plus weight decay.

    Args:
      labels: int32 `[batch]` class indices.
      probabilities: float32 `[batch, num_classes]`.
      aux_losses: regularization losses.

    Returns:
      The total per-replica loss and the logged terms.
    """
    class_loss = tf.reduce_mean(tf_keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    regularization = tf.add_n([tf.cast(l, tf.float32) for l in aux_losses]) if aux_losses else tf.constant(0.0)
    total = class_loss + regularization
    return total, {'class_loss': class_loss, 'regularization_loss': regularization}

  @staticmethod
  def _to_unit_range(images: tf.Tensor) -> tf.Tensor:
    """uint8 clips from the pipeline -> float32 in [0, 1], the pretraining scale."""
    return tf.cast(images, tf.float32) / 255.0

  def train_step(self, inputs: Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]], model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None) -> Dict[str, Any]:
    features, labels = inputs
    labels = labels['label']

    def loss_fn():
      logits = tf.cast(model(self._to_unit_range(features['image']), training=True), tf.float32)
      probabilities = tf.nn.softmax(logits)
      loss, logs = self.build_losses(labels, probabilities, self._regularization_losses(model))
      return pretrain.assert_finite_loss(loss), (logs, probabilities)

    loss, (logs, probabilities) = optimization_step.minimize(loss_fn, model, optimizer)
    logged_terms.update(metrics, logs)
    for metric in logged_terms.other_metrics(metrics):
      metric.update_state(labels, probabilities)
    logs[self.loss] = loss
    return logs

  def validation_step(self, inputs: Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]], model: tf_keras.Model,
                      metrics=None) -> Dict[str, Any]:
    features, labels = inputs
    labels = labels['label']
    probabilities = self.inference_step(features['image'], model)
    loss, logs = self.build_losses(labels, probabilities, self._regularization_losses(model))
    logged_terms.update(metrics, logs)
    for metric in logged_terms.other_metrics(metrics):
      metric.update_state(labels, probabilities)
    logs[self.loss] = loss
    return logs

  def inference_step(self, inputs: tf.Tensor, model: tf_keras.Model) -> tf.Tensor:
    """Per-video class probabilities: the softmax of every view, averaged over the views of each video.

    Args:
      inputs: uint8 (or [0, 1] float) `[batch * views, T, S, S, 3]`, the views of a video consecutive.
      model: the classifier.

    Returns:
      float32 `[batch, num_classes]`.
    """
    images = self._to_unit_range(inputs) if inputs.dtype == tf.uint8 else tf.cast(inputs, tf.float32)
    logits = tf.cast(model(images, training=False), tf.float32)
    return multi_view.average_views(tf.nn.softmax(logits), self.num_test_views)


@task_factory.register_task_cls(vc_cfg.LinearEvalTask)
class LinearEvalTask(VideoClassificationTask):
  """Linear evaluation: frozen backbone, L2-normalised features (task.model.normalize_features), linear layer."""
  freeze_backbone = True


@task_factory.register_task_cls(vc_cfg.FineTuneTask)
class FineTuneTask(VideoClassificationTask):
  """Fine-tuning of every layer from the pretrained backbone (semi-supervised and UCF-101 / HMDB-51 transfer)."""


@task_factory.register_task_cls(vc_cfg.SupervisedTask)
class SupervisedTask(VideoClassificationTask):
  """The supervised baseline: every layer trained from random initialisation."""
  uses_init_checkpoint = False
