"""CVRL self-supervised pretraining task.

Glue only: the model comes from the registered 'cvrl' builder, the pipeline from `dataloaders.ssl_input`, the
on-device resize from `ops.window_resize` (when the data config sets a canvas), the on-device colour augmentation
from `ops.color_augment` and the loss from `losses.contrastive`.
"""
from typing import Any, Dict, List, Optional, Tuple

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import base_task
from official.core import input_reader
from official.core import task_factory
from official.vision.modeling import factory_3d

from official_cvrl.configs import cvrl as cvrl_cfg
from official_cvrl.dataloaders import ssl_input
from official_cvrl.dataloaders import video_decoder
from official_cvrl.evaluation import embedding_health
from official_cvrl.evaluation import knn_monitor
from official_cvrl.losses import contrastive
from official_cvrl.modeling import factory as _model_factory  # pylint: disable=unused-import  (registers builders)
from official_cvrl.ops import color_augment
from official_cvrl.ops import temporal_sampling
from official_cvrl.ops import window_resize
from official_cvrl.tasks import gradient_cache
from official_cvrl.tasks import logged_terms
from official_cvrl.tasks import optimization_step
from official_cvrl.utils import errors
from official_cvrl.utils import input_files

# Validation-step outputs the kNN monitor collects (not metrics: aggregate_logs gathers them on the host).
_KNN_FEATURES = 'knn_features'
_KNN_LABELS = 'knn_labels'


def build_l2_regularizer(l2_weight_decay: float) -> Optional[tf_keras.regularizers.Regularizer]:
  """Keras L2 regularizer whose gradient is `l2_weight_decay * w`, as weight decay; None when 0."""
  return tf_keras.regularizers.l2(l2_weight_decay / 2.0) if l2_weight_decay else None


def build_video_dataset(params: cvrl_cfg.DataConfig, parser_fn, postprocess_fn, key: str,
                        input_context: Optional[tf.distribute.InputContext] = None,
                        decoder_fn=None, transform_and_batch_fn=None) -> tf.data.Dataset:
  """Reads SequenceExample TFRecords through Model Garden's InputReader after checking the files exist.

  Args:
    params: the data config.
    parser_fn: `Parser.parse_fn(is_training)` of the pipeline.
    postprocess_fn: a function applied to each batch, or None.
    key: the config key of `params` ('task.train_data'), named in error messages.
    input_context: the distribution input context.
    decoder_fn: serialized record -> dict of tensors; default: `video_decoder.Decoder` with the config's keys.
    transform_and_batch_fn: batching other than the reader's plain `batch` (e.g. `Parser.canvas_batch_fn`).

  Returns:
    The batched dataset.
  """
  input_files.check_data_config(params, key)
  if decoder_fn is None:
    decoder_fn = video_decoder.Decoder(image_key=params.image_field_key, label_key=params.label_field_key).decode
  reader = input_reader.InputReader(
      params,
      dataset_fn=tf.data.TFRecordDataset,
      decoder_fn=decoder_fn,
      parser_fn=parser_fn,
      transform_and_batch_fn=transform_and_batch_fn,
      postprocess_fn=postprocess_fn)
  return reader.read(input_context=input_context)


def assert_finite_loss(loss: tf.Tensor) -> tf.Tensor:
  """Fails the step with a recognisable message when the loss is NaN or Inf (see utils.errors)."""
  return tf.debugging.assert_all_finite(loss, message=errors.NON_FINITE_LOSS_MARKER)


@task_factory.register_task_cls(cvrl_cfg.CVRLPretrainTask)
class CVRLPretrainTask(base_task.Task):
  """Contrastive pretraining of an R3D backbone with temporal interval sampling and TC augmentation."""

  def __init__(self, params: cvrl_cfg.CVRLPretrainTask, logging_dir: Optional[str] = None, name: Optional[str] = None):
    # The experiment's validate() already ran these checks; they run again here for entry points that build a
    # task from a task config alone (export, tests).
    try:
      params.validate()
    except ValueError as e:
      raise errors.UserInputError(str(e)) from None
    super().__init__(params, logging_dir=logging_dir, name=name)

  def build_model(self) -> tf_keras.Model:
    model_config = self.task_config.model
    feature_shape = self.task_config.train_data.feature_shape
    input_specs = tf_keras.layers.InputSpec(shape=[None] + list(feature_shape))
    model = factory_3d.build_model(
        model_config.model_type,
        input_specs=input_specs,
        model_config=model_config,
        num_classes=0,
        l2_regularizer=build_l2_regularizer(self.task_config.losses.l2_weight_decay))
    # Build the variables now so checkpoint restore and parameter logging see them.
    model(tf.zeros([1] + list(feature_shape), tf.float32), training=False)
    logging.info('CVRL model built: %d parameters (all variables).',
                 sum(int(tf.size(v)) for v in model.variables))
    return model

  def build_inputs(self, params: cvrl_cfg.DataConfig,
                   input_context: Optional[tf.distribute.InputContext] = None) -> tf.data.Dataset:
    temporal = params.temporal_augmentation
    spatial = params.spatial_augmentation
    parser = ssl_input.Parser(
        num_frames=params.feature_shape[0],
        temporal_stride=params.temporal_stride,
        crop_size=params.feature_shape[1],
        temporal_augmentation=temporal.enabled,
        interval_distribution=temporal.interval_distribution,
        interval_power=temporal.interval_power,
        spatial_augmentation=spatial.enabled,
        temporally_consistent=spatial.temporally_consistent,
        crop_area_range=spatial.crop_area_range,
        crop_aspect_ratio_range=spatial.crop_aspect_ratio_range,
        flip_probability=spatial.flip_probability,
        image_key=params.image_field_key,
        label_key=params.label_field_key,
        num_clips=params.num_clips,
        canvas_size=params.device_resize_canvas)
    key = 'task.train_data' if params.is_training else 'task.validation_data'
    return build_video_dataset(params, parser.parse_fn(params.is_training), ssl_input.PostBatchProcessor(),
                               key=key, input_context=input_context,
                               transform_and_batch_fn=parser.canvas_batch_fn(params.global_batch_size,
                                                                             params.drop_remainder))

  def build_metrics(self, training: bool = True) -> List[tf_keras.metrics.Metric]:
    """A mean of every scalar `build_losses` logs: contrastive loss, accuracy and entropy, L2, the label-free
    health of the embeddings (evaluation/embedding_health.py), and any term a subclass adds."""
    projections = tf.TensorSpec([2 * self.task_config.train_data.num_clips,
                                 self.task_config.model.projection_head.output_dim], tf.float32)
    return logged_terms.build_metrics(self.build_losses, projections, aux_losses=None)

  def _clips_on_device(self, features: Dict[str, tf.Tensor], params: cvrl_cfg.DataConfig) -> tf.Tensor:
    """The uint8 clips of a batch: as the pipeline delivered them, or resized and flipped here from the canvas."""
    if params.device_resize_canvas is None:
      return features['image']
    return window_resize.resize_windows(features['image'], features['window_size'], features['flip'],
                                        params.feature_shape[1:3])

  def _augment_on_device(self, images: tf.Tensor, params: cvrl_cfg.DataConfig, seed=None) -> tf.Tensor:
    """uint8 clips from the pipeline -> float [0, 1] clips with colour jitter / greyscale / blur (Algorithm 1)."""
    images = tf.cast(images, tf.float32) / 255.0
    spatial = params.spatial_augmentation
    if not spatial.enabled:
      return images
    return color_augment.augment_clips(
        images,
        color_jitter_probability=spatial.color_jitter_probability,
        color_jitter_strength=spatial.color_jitter_strength,
        jitter_random_order=spatial.color_jitter_random_order,
        grayscale_probability=spatial.grayscale_probability,
        blur_probability=spatial.blur_probability,
        per_frame=not spatial.temporally_consistent,
        seed=seed)

  def build_losses(self, projections: tf.Tensor, aux_losses: Optional[List[tf.Tensor]] = None
                   ) -> Tuple[tf.Tensor, Dict[str, tf.Tensor]]:
    """Contrastive loss on [rho * batch, dim] projections (rho = num_clips equal parts, part v clip v) + L2.

    rho = 2 is the paper's pair loss; rho > 2 the multi-positive loss (`contrastive.multi_view_contrastive_loss`).

    Returns:
      The total per-replica loss and a dict of the logged terms.
    """
    views = tf.split(tf.cast(projections, tf.float32), self.task_config.train_data.num_clips, axis=0)
    projections_1, projections_2 = views[0], views[1]
    contrastive_loss, stats = contrastive.multi_view_contrastive_loss(
        views, temperature=self.task_config.losses.temperature)
    regularization = tf.add_n([tf.cast(l, tf.float32) for l in aux_losses]) if aux_losses else tf.constant(0.0)
    total = contrastive_loss + regularization
    logs = {'contrastive_loss': contrastive_loss, 'regularization_loss': regularization}
    logs.update(stats)
    # Monitoring only (this replica's batch, no gradient): collapse shows here before it shows in the loss.
    logs.update(embedding_health.health_metrics(tf.stop_gradient(projections_1), tf.stop_gradient(projections_2)))
    return total, logs

  def train_step(self, inputs: Tuple[Dict[str, tf.Tensor], Dict[str, tf.Tensor]], model: tf_keras.Model,
                 optimizer: tf_keras.optimizers.Optimizer, metrics=None) -> Dict[str, Any]:
    features, _ = inputs
    chunk_size = self.task_config.gradient_chunk_size
    if chunk_size:
      # Gradient caching: the whole replica batch in the loss, activations and float clips of one chunk at a
      # time. Each chunk's augmentation is seeded by (step seed, chunk), so both passes draw the same.
      step_seed = temporal_sampling.stateless_seed(None)
      loss, logs = gradient_cache.chunked_minimize(
          self._clips_on_device(features, self.task_config.train_data), model, optimizer, lambda embeddings: self.build_losses(embeddings, aux_losses=None),
          chunk_size, preprocess=lambda chunk, index: self._augment_on_device(
              chunk, self.task_config.train_data, seed=tf.random.experimental.stateless_fold_in(step_seed, index)))
      assert_finite_loss(loss)
      logged_terms.update(metrics, logs)
      return {self.loss: loss}

    images = self._augment_on_device(self._clips_on_device(features, self.task_config.train_data),
                                     self.task_config.train_data)

    def loss_fn():
      outputs = model(images, training=True)
      loss, logs = self.build_losses(outputs['projection'], aux_losses=model.losses)
      return assert_finite_loss(loss), logs

    loss, logs = optimization_step.minimize(loss_fn, model, optimizer)
    logged_terms.update(metrics, logs)
    return {self.loss: loss}

  def validation_step(self, inputs, model: tf_keras.Model, metrics=None) -> Dict[str, Any]:
    features, labels = inputs
    images = self._augment_on_device(self._clips_on_device(features, self.task_config.validation_data),
                                     self.task_config.validation_data)
    outputs = model(images, training=False)
    loss, logs = self.build_losses(outputs['projection'], aux_losses=model.losses)
    logged_terms.update(metrics, logs)
    step_logs = {self.loss: loss}
    if self.task_config.knn_monitor.enabled:
      # Backbone features of each video's first clip (rows 0..batch-1) and its label, gathered on the host by
      # aggregate_logs for the kNN monitor.
      num_videos = tf.shape(labels['label'])[0]
      step_logs[_KNN_FEATURES] = outputs['features'][:num_videos]
      step_logs[_KNN_LABELS] = labels['label']
    return step_logs

  def aggregate_logs(self, state=None, step_outputs=None):
    """Collects the kNN monitor's features and labels over the validation steps (host side, NumPy)."""
    if not self.task_config.knn_monitor.enabled or step_outputs is None:
      return state
    state = state or {_KNN_FEATURES: [], _KNN_LABELS: []}
    for key in (_KNN_FEATURES, _KNN_LABELS):
      values = step_outputs[key]
      # Under a distribution strategy each value is a tuple of per-replica tensors.
      values = values if isinstance(values, (tuple, list)) else (values,)
      state[key].extend(np.asarray(v) for v in values)
    return state

  def reduce_aggregated_logs(self, aggregated_logs, global_step=None) -> Dict[str, float]:
    """The kNN monitor's top-1 (`knn_top1`) over every validation video seen in this evaluation."""
    if not self.task_config.knn_monitor.enabled or not aggregated_logs:
      return {}
    monitor = self.task_config.knn_monitor
    top1 = knn_monitor.weighted_knn_top1(np.concatenate(aggregated_logs[_KNN_FEATURES]),
                                         np.concatenate(aggregated_logs[_KNN_LABELS]),
                                         k=monitor.k, temperature=monitor.temperature)
    return {'knn_top1': np.float32(top1)}

  def inference_step(self, inputs: tf.Tensor, model: tf_keras.Model) -> Dict[str, tf.Tensor]:
    return model(inputs, training=False)
