"""The CVRL pretraining task end to end on tiny data: Model Garden's train_lib, XLA, distribution, bad input."""
import os

import numpy as np
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory
from official.core import train_lib
from official.modeling import optimization

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.tasks import pretrain
from official_cvrl.utils import errors
from tests import fake_records
from tests.losses import cross_replica_test


def tiny_pretrain_config(train_path: str, validation_path: str, model_dir_steps: int = 2):
  """cvrl_pretrain_demo shrunk to [4, 32, 32, 3] clips, batch 2, `model_dir_steps` steps."""
  config = exp_factory.get_exp_config('cvrl_pretrain_demo')
  config.override({
      'task': {
          'train_data': {'input_path': train_path, 'feature_shape': [4, 32, 32, 3], 'global_batch_size': 2,
                         'temporal_stride': 2, 'shuffle_buffer_size': 4},
          'validation_data': {'input_path': validation_path, 'feature_shape': [4, 32, 32, 3],
                              'global_batch_size': 2, 'temporal_stride': 2},
          'model': {'projection_head': {'hidden_dim': 64, 'output_dim': 16}},
      },
      'trainer': {'train_steps': model_dir_steps, 'validation_steps': 1, 'validation_interval': model_dir_steps,
                  'steps_per_loop': 1, 'summary_interval': 1, 'checkpoint_interval': model_dir_steps,
                  'optimizer_config': {'learning_rate': {'cosine': {'decay_steps': model_dir_steps}},
                                       'warmup': {'linear': {'warmup_steps': 0}}}},
  }, is_strict=True)
  config.trainer.optimizer_config.learning_rate.cosine.offset = 0
  config.validate()
  return config


class PretrainTaskTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.train_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train.tfrecord'), 6)
    self.validation_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'val.tfrecord'), 4, seed=1)

  def _task_and_batch(self, config):
    task = task_factory.get_task(config.task)
    dataset = task.build_inputs(config.task.train_data)
    return task, next(iter(dataset))

  def test_inputs_are_pairs_of_uint8_clips(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    _, (features, labels) = self._task_and_batch(config)
    self.assertEqual(features['image'].dtype, tf.uint8)
    self.assertEqual(features['image'].shape, (4, 4, 32, 32, 3))  # 2 videos x 2 views.
    self.assertEqual(labels['label'].shape, (2,))

  def test_train_and_eval_through_train_lib(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    model_dir = self.get_temp_dir()
    task = task_factory.get_task(config.task, logging_dir=model_dir)
    _, logs = train_lib.run_experiment(
        distribution_strategy=tf.distribute.get_strategy(), task=task, mode='train_and_eval',
        params=config, model_dir=model_dir, run_post_eval=True)
    for name in ('contrastive_loss', 'contrastive_accuracy', 'contrastive_entropy', 'regularization_loss'):
      self.assertIn(name, logs)
      self.assertTrue(np.isfinite(logs[name]), name)
    self.assertBetween(logs['contrastive_accuracy'], 0.0, 1.0)
    # Batch of 2 videos: 3 candidates per anchor, so the entropy is at most log(3).
    self.assertBetween(logs['contrastive_entropy'], 0.0, np.log(3.0) + 1e-5)
    # The demo experiment's kNN monitor (evaluation/knn_monitor.py) reports at every evaluation.
    self.assertBetween(float(logs['knn_top1']), 0.0, 1.0)
    self.assertIsNotNone(tf.train.latest_checkpoint(model_dir))

  def test_train_step_compiles_with_xla_and_updates_weights(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    task, batch = self._task_and_batch(config)
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
    before = [v.numpy().copy() for v in model.trainable_variables]
    step = tf.function(task.train_step, jit_compile=True)
    logs = step(batch, model=model, optimizer=optimizer, metrics=task.build_metrics())
    self.assertTrue(np.isfinite(logs['loss'].numpy()))
    changed = [not np.allclose(b, v.numpy()) for b, v in zip(before, model.trainable_variables)]
    self.assertTrue(any(changed))

  def test_l2_weight_decay_is_part_of_the_loss(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.losses.l2_weight_decay = 1e-2
    task, batch = self._task_and_batch(config)
    model = task.build_model()
    metrics = task.build_metrics()
    task.validation_step(batch, model, metrics=metrics)
    by_name = {m.name: m.result().numpy() for m in metrics}
    kernels = [v for v in model.trainable_variables if 'kernel' in v.name]
    expected = sum(0.5 * 1e-2 * float(tf.reduce_sum(tf.square(k))) for k in kernels)
    self.assertAllClose(by_name['regularization_loss'], expected, rtol=1e-4)

  def test_train_step_under_two_replicas(self):
    strategy = cross_replica_test.two_replica_strategy(self, 'mirrored')
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.train_data.global_batch_size = 4
    with strategy.scope():
      task = task_factory.get_task(config.task)
      model = task.build_model()
      optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
      metrics = task.build_metrics()
    dataset = strategy.distribute_datasets_from_function(
        lambda ctx: task.build_inputs(config.task.train_data, input_context=ctx))
    batch = next(iter(dataset))
    logs = strategy.run(tf.function(task.train_step),
                        args=(batch,), kwargs=dict(model=model, optimizer=optimizer, metrics=metrics))
    losses = strategy.experimental_local_results(logs['loss'])
    self.assertLen(losses, 2)
    self.assertTrue(all(np.isfinite(l.numpy()) for l in losses))

  def test_resize_on_the_accelerator_gives_the_cpu_pipeline_clips(self):
    """device_resize_canvas: the pipeline ships windows, the task's resize gives the clips it shipped before."""
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    task = task_factory.get_task(config.task)
    params = config.task.validation_data  # Evaluation draws are seeded by the video: both pipelines agree.
    cpu_features, _ = next(iter(task.build_inputs(params)))
    params.device_resize_canvas = (40, 48)  # The fake videos' frame size.
    features, _ = next(iter(task.build_inputs(params)))
    self.assertEqual(features['image'].shape, (4, 4, 40, 48, 3))
    clips = task._clips_on_device(features, params)  # pylint: disable=protected-access
    difference = np.abs(clips.numpy().astype(int) - cpu_features['image'].numpy().astype(int))
    self.assertLessEqual(difference.max(), 1)  # Rounding ties only (tests/ops/window_resize_test.py).
    self.assertLess(np.mean(difference > 0), 1e-3)

  def test_train_steps_with_resize_on_the_accelerator(self):
    for chunk_size in (0, 2):  # The plain step under XLA, and gradient caching.
      config = tiny_pretrain_config(self.train_path, self.validation_path)
      config.task.train_data.device_resize_canvas = (40, 48)
      config.task.gradient_chunk_size = chunk_size
      task, batch = self._task_and_batch(config)
      self.assertIn('window_size', batch[0])
      model = task.build_model()
      optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
      step = tf.function(task.train_step, jit_compile=not chunk_size)
      logs = step(batch, model=model, optimizer=optimizer, metrics=task.build_metrics())
      self.assertTrue(np.isfinite(logs['loss'].numpy()), chunk_size)

  def test_bad_canvas_names_the_key(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.train_data.device_resize_canvas = (16, 48)
    with self.assertRaisesRegex(ValueError, r'task\.train_data\.device_resize_canvas=\[16, 48\]'):
      config.validate()
    config.task.train_data.device_resize_canvas = (40, 48)
    config.task.train_data.spatial_augmentation.temporally_consistent = False
    with self.assertRaisesRegex(ValueError, 'temporally_consistent=true'):
      config.validate()

  def test_missing_files_name_the_key(self):
    config = tiny_pretrain_config(os.path.join(self.get_temp_dir(), 'nothing-*'), self.validation_path)
    task = task_factory.get_task(config.task)
    with self.assertRaisesRegex(errors.UserInputError, r'task\.train_data\.input_path: no file matches'):
      task.build_inputs(config.task.train_data)

  def test_empty_dataset_is_reported(self):
    empty = os.path.join(self.get_temp_dir(), 'empty.tfrecord')
    with tf.io.TFRecordWriter(empty):
      pass
    config = tiny_pretrain_config(empty, self.validation_path)
    task = task_factory.get_task(config.task)
    with self.assertRaisesRegex(errors.UserInputError, 'hold no records'):
      task.build_inputs(config.task.train_data)

  def test_unsupported_file_type_names_the_key(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.train_data.file_type = 'sstable'
    task = task_factory.get_task(config.task)
    with self.assertRaisesRegex(errors.UserInputError, r"task\.train_data\.file_type='sstable'"):
      task.build_inputs(config.task.train_data)

  def test_non_finite_loss_is_marked(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, errors.NON_FINITE_LOSS_MARKER):
      pretrain.assert_finite_loss(tf.constant(np.nan))
    self.assertAllClose(pretrain.assert_finite_loss(tf.constant(1.5)), 1.5)

  def test_feature_shape_the_backbone_cannot_take(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.train_data.feature_shape = (4, 8, 8, 3)  # Below the backbone's total stride of 16.
    task = task_factory.get_task(config.task)
    with self.assertRaisesRegex(ValueError, 'feature_shape|input'):
      task.build_model()


if __name__ == '__main__':
  tf.test.main()
