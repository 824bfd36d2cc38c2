"""End-to-end tests of the evaluation protocols through Model Garden's train_lib on tiny data.

Tiny everything: R3D-18 at width 0.25 without stem pool (the demo backbone), clips [4, 32, 32, 3], batch 2, two
training steps, evaluation with 2 clips x 3 crops of 32x40 frames.
"""
import glob
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory
from official.core import train_lib
from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import video_classification as vc_cfg
from official_cvrl.utils import errors
from tests.dataloaders import classification_records as records
from tests.losses import cross_replica_test
from tests.utils import checkpoints_test

_NUM_CLASSES = 3


def _softmax64(logits):
  logits = logits.astype(np.float64)
  exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
  return exp / exp.sum(axis=-1, keepdims=True)


def _validation_scalars(model_dir):
  """{tag: last value} of the scalars in <model_dir>/validation (what the demo reads)."""
  values = {}
  for path in sorted(glob.glob(os.path.join(model_dir, 'validation', 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        values[value.tag] = float(tf.make_ndarray(value.tensor)) if value.HasField('tensor') else value.simple_value
  return values


class VideoClassificationTaskTest(tf.test.TestCase, parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    root = os.path.join(tf.compat.v1.test.get_temp_dir(), 'video_classification_data')
    cls.train_pattern = records.write_shards(
        root, 'train', records.random_videos(6, _NUM_CLASSES, 12, 32, 40, seed=0))
    cls.test_pattern = records.write_shards(
        root, 'test', records.random_videos(3, _NUM_CLASSES, 12, 32, 40, seed=1))

  def _config(self, experiment, init_checkpoint=''):
    """A registered demo experiment shrunk to 2 steps on the tiny data, with 2 clips x 3 crops evaluation."""
    config = exp_factory.get_exp_config(experiment)
    config.override({
        'task': {
            'init_checkpoint': init_checkpoint,
            'train_data': {'input_path': self.train_pattern, 'feature_shape': [4, 32, 32, 3],
                           'num_classes': _NUM_CLASSES, 'global_batch_size': 2, 'shuffle_buffer_size': 6},
            'validation_data': {'input_path': self.test_pattern, 'feature_shape': [4, 32, 32, 3],
                                'num_classes': _NUM_CLASSES, 'global_batch_size': 2, 'num_test_clips': 2,
                                'num_test_crops': 3},
        },
        'trainer': {
            'train_steps': 2, 'steps_per_loop': 1, 'summary_interval': 1, 'checkpoint_interval': 2,
            'validation_interval': 2,
            'optimizer_config': {'learning_rate': {'cosine': {'decay_steps': 2, 'offset': 0}},
                                 'warmup': {'linear': {'warmup_steps': 0}}},
        },
    }, is_strict=True)
    config.validate()
    return config

  def _run(self, config, model_dir):
    task = task_factory.get_task(config.task, logging_dir=model_dir)
    model, _ = train_lib.run_experiment(
        distribution_strategy=tf.distribute.get_strategy(), task=task, mode='train_and_eval', params=config,
        model_dir=model_dir)
    return model

  def _pretrain_checkpoint(self):
    source = checkpoints_test.pretrain_model()
    checkpoints_test.randomize(source)
    model_dir = os.path.join(self.get_temp_dir(), 'pretrain')
    checkpoints_test.save_like_model_garden(source, model_dir)
    return model_dir, {v.name: v.numpy() for v in source.backbone.variables}

  def _assert_validation_metrics(self, model_dir):
    scalars = _validation_scalars(model_dir)
    self.assertBetween(scalars['accuracy'], 0.0, 1.0)
    # With 3 classes top-5 is top-3: every video counts as correct.
    self.assertEqual(scalars['top_5_accuracy'], 1.0)

  def test_linear_eval_trains_only_the_classifier(self):
    pretrain_dir, pretrained = self._pretrain_checkpoint()
    model_dir = os.path.join(self.get_temp_dir(), 'linear_eval')
    config = self._config('cvrl_linear_eval_demo', init_checkpoint=pretrain_dir)
    self.assertTrue(config.task.model.normalize_features)
    model = self._run(config, model_dir)
    # Weights and batch-norm moving statistics of the backbone are bit-identical to the checkpoint's, although
    # the train step ran the model with training=True.
    self.assertLen(pretrained, len(model.backbone.variables))
    for variable in model.backbone.variables:
      self.assertAllEqual(variable, pretrained[variable.name], msg=variable.name)
    moving = [v for v in model.backbone.variables if 'moving_' in v.name]
    self.assertNotEmpty(moving)
    self.assertEqual({v.name for v in model.trainable_variables}, {'classifier/kernel:0', 'classifier/bias:0'})
    self._assert_validation_metrics(model_dir)

  def test_finetune_trains_the_restored_backbone(self):
    pretrain_dir, pretrained = self._pretrain_checkpoint()
    model_dir = os.path.join(self.get_temp_dir(), 'finetune')
    model = self._run(self._config('cvrl_finetune_demo', init_checkpoint=pretrain_dir), model_dir)
    stem = model.backbone.get_layer('stem_conv').kernel
    # Restored, then trained: close to the checkpoint's value but not equal.
    self.assertNotAllEqual(stem, pretrained[stem.name])
    self.assertAllClose(stem, pretrained[stem.name], atol=0.05)
    moving_mean = model.backbone.get_layer('stem_bn').moving_mean
    self.assertNotAllEqual(moving_mean, pretrained[moving_mean.name])
    self._assert_validation_metrics(model_dir)

  def test_supervised_from_scratch(self):
    model_dir = os.path.join(self.get_temp_dir(), 'supervised')
    config = self._config('cvrl_supervised_demo')
    self.assertAllClose(config.task.model.dropout_rate, 0.5)
    self._run(config, model_dir)
    self._assert_validation_metrics(model_dir)

  def test_supervised_rejects_init_checkpoint(self):
    config = exp_factory.get_exp_config('cvrl_supervised_demo')
    config.task.init_checkpoint = '/some/pretrain/run'
    with self.assertRaisesRegex(ValueError, 'trains from scratch'):
      config.validate()

  def test_mismatched_init_checkpoint_fails_before_training(self):
    source = checkpoints_test.pretrain_model(width_multiplier=0.5)
    pretrain_dir = os.path.join(self.get_temp_dir(), 'wide_pretrain')
    checkpoints_test.save_like_model_garden(source, pretrain_dir)
    config = self._config('cvrl_linear_eval_demo', init_checkpoint=pretrain_dir)
    task = task_factory.get_task(config.task)
    model = task.build_model()
    with self.assertRaisesRegex(errors.UserInputError, r'(?s)task.init_checkpoint=.*shape differs.*stem_conv'):
      task.initialize(model)

  def test_view_averaged_softmax_matches_numpy(self):
    config = self._config('cvrl_linear_eval_demo')
    task = task_factory.get_task(config.task)
    model = task.build_model()
    views = 6  # 2 clips x 3 crops.
    images = np.random.default_rng(0).integers(0, 256, (2 * views, 4, 32, 32, 3), dtype=np.uint8)
    logits = model(images.astype(np.float32) / 255.0, training=False).numpy()
    expected = _softmax64(logits).reshape(2, views, _NUM_CLASSES).mean(axis=1)
    self.assertAllClose(task.inference_step(tf.constant(images), model), expected, atol=1e-6)

  def test_validation_metrics_score_the_averaged_prediction(self):
    config = self._config('cvrl_linear_eval_demo')
    task = task_factory.get_task(config.task)
    model = task.build_model()
    images = np.random.default_rng(1).integers(0, 256, (2 * 6, 4, 32, 32, 3), dtype=np.uint8)
    averaged = task.inference_step(tf.constant(images), model).numpy()
    labels = np.argmax(averaged, axis=1).astype(np.int32)
    labels[1] = (labels[1] + 1) % _NUM_CLASSES  # One right, one wrong.
    metrics = task.build_metrics(training=False)
    self.assertEqual([m.name for m in metrics], ['accuracy', 'top_5_accuracy'])
    logs = task.validation_step(({'image': tf.constant(images)}, {'label': tf.constant(labels)}), model, metrics)
    self.assertAllClose(metrics[0].result(), 0.5)
    expected_loss = -np.mean(np.log(averaged[np.arange(2), labels]))
    self.assertAllClose(logs['loss'], expected_loss, atol=1e-5)

  def test_two_replicas_average_the_views_of_their_own_videos(self):
    strategy = cross_replica_test.two_replica_strategy(self, 'mirrored')
    config = self._config('cvrl_linear_eval_demo')
    task = task_factory.get_task(config.task)
    views = 6
    images = np.random.default_rng(2).integers(0, 256, (2 * views, 4, 32, 32, 3), dtype=np.uint8)
    with strategy.scope():
      model = task.build_model()
      metrics = task.build_metrics(training=False)
    expected = task.inference_step(tf.constant(images), model).numpy()
    labels = np.argmax(expected, axis=1).astype(np.int32)
    labels[0] = (labels[0] + 1) % _NUM_CLASSES  # Replica 0's video wrong, replica 1's right.

    def replica_inputs(context):
      video = context.replica_id_in_sync_group
      return ({'image': tf.constant(images[video * views:(video + 1) * views])},
              {'label': tf.constant(labels[video:video + 1])})

    inputs = strategy.experimental_distribute_values_from_function(replica_inputs)
    strategy.run(tf.function(lambda x: task.validation_step(x, model, metrics)), args=(inputs,))
    self.assertAllClose(metrics[0].result(), 0.5)
    self.assertAllClose(metrics[1].result(), 1.0)

  @parameterized.named_parameters(
      ('split', 'cvrl_finetune_ucf101', {'dataset_split': 2}, 'gs://YOUR_BUCKET/ucf101_split2/train-*'),
      ('label_fraction', 'cvrl_semi_supervised_kinetics400', {'label_fraction': 0.1},
       'gs://YOUR_BUCKET/kinetics400_train_10pct/train-*'),
  )
  def test_placeholders_select_the_files(self, experiment, override, expected_train_path):
    config = exp_factory.get_exp_config(experiment)
    config.override({'task': override}, is_strict=True)
    config.validate()
    self.assertEqual(config.task.resolve_input_path(config.task.train_data.input_path), expected_train_path)

  def test_paper_settings(self):
    linear = exp_factory.get_exp_config('cvrl_linear_eval_kinetics400')
    self.assertIsInstance(linear.task, vc_cfg.LinearEvalTask)
    self.assertTrue(linear.task.model.normalize_features)
    self.assertEqual(tuple(linear.task.train_data.feature_shape), (32, 224, 224, 3))
    self.assertEqual(tuple(linear.task.validation_data.feature_shape), (32, 256, 256, 3))
    self.assertEqual((linear.task.validation_data.num_test_clips, linear.task.validation_data.num_test_crops),
                     (10, 3))
    self.assertAllClose(linear.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate, 32.0)
    self.assertEqual(linear.trainer.train_steps, 100 * (215570 // 1024))
    semi = exp_factory.get_exp_config('cvrl_semi_supervised_kinetics400')
    self.assertEqual(semi.trainer.optimizer_config.warmup.linear.warmup_steps, 0)
    self.assertAllClose(semi.task.label_fraction, 0.01)
    self.assertEqual(semi.trainer.train_steps, 100 * (2156 // 1024))
    supervised = exp_factory.get_exp_config('cvrl_supervised_kinetics400')
    self.assertEqual(supervised.trainer.train_steps, 200 * (215570 // 1024))
    self.assertAllClose(supervised.task.model.dropout_rate, 0.5)
    self.assertFalse(supervised.task.model.normalize_features)
    for name, lr in (('cvrl_finetune_ucf101', 0.16), ('cvrl_finetune_hmdb51', 0.16),
                     ('cvrl_linear_eval_ucf101', 0.8), ('cvrl_linear_eval_hmdb51', 0.2)):
      config = exp_factory.get_exp_config(name)
      self.assertAllClose(config.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate, lr)
      self.assertEqual(config.task.train_data.global_batch_size, 128)
      self.assertEqual(config.task.dataset_split, 1)


if __name__ == '__main__':
  tf.test.main()
