"""The pretrain task with rho > 2 clips per video and with gradient caching, on tiny fake records."""
import os

import numpy as np
import tensorflow as tf

from official.core import task_factory
from official.core import train_lib

from official_cvrl import registry_imports  # pylint: disable=unused-import
from tests import fake_records
from tests.tasks.pretrain_test import tiny_pretrain_config


class PretrainMultiClipTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.train_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train.tfrecord'), 6)
    self.validation_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'val.tfrecord'), 4, seed=1)

  def _config(self, **task_overrides):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.override({'task': task_overrides}, is_strict=True)
    config.validate()
    return config

  def test_three_clips_train_and_eval_through_train_lib(self):
    config = self._config(train_data={'num_clips': 3}, validation_data={'num_clips': 3})
    task = task_factory.get_task(config.task)
    features, _ = next(iter(task.build_inputs(config.task.train_data)))
    self.assertEqual(features['image'].shape, (6, 4, 32, 32, 3))  # 2 videos x 3 clips.
    model_dir = self.get_temp_dir()
    _, logs = train_lib.run_experiment(
        distribution_strategy=tf.distribute.get_strategy(), task=task, mode='train_and_eval',
        params=config, model_dir=model_dir, run_post_eval=True)
    # 2 videos x 3 clips: 5 candidates per anchor, so the entropy is at most log(5).
    self.assertBetween(logs['contrastive_entropy'], 0.0, np.log(5.0) + 1e-5)
    for name in ('contrastive_loss', 'effective_rank', 'alignment', 'uniformity', 'embedding_std'):
      self.assertTrue(np.isfinite(logs[name]), name)

  def test_mismatched_validation_clips_are_rejected(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.train_data.num_clips = 3
    with self.assertRaisesRegex(ValueError, 'task.validation_data.num_clips'):
      config.validate()

  def test_one_chunk_gradient_cache_is_the_ordinary_task_step(self):
    # Spatial augmentation off: the two steps see identical inputs (colour augmentation draws fresh randomness).
    overrides = dict(train_data={'spatial_augmentation': {'enabled': False}})
    ordinary_config = self._config(**overrides)
    cached_config = self._config(gradient_chunk_size=4, **overrides)  # 2 videos x 2 clips: one chunk.
    ordinary = task_factory.get_task(ordinary_config.task)
    cached = task_factory.get_task(cached_config.task)
    batch = next(iter(ordinary.build_inputs(ordinary_config.task.train_data)))
    models = [ordinary.build_model(), cached.build_model()]
    models[1].set_weights(models[0].get_weights())
    optimizers = [t.create_optimizer(c.trainer.optimizer_config, c.runtime)
                  for t, c in ((ordinary, ordinary_config), (cached, cached_config))]
    losses = [task.train_step(batch, model, optimizer)['loss']
              for task, model, optimizer in zip((ordinary, cached), models, optimizers)]
    self.assertAllClose(losses[0], losses[1], rtol=1e-5)
    for a, b in zip(models[0].variables, models[1].variables):
      self.assertAllClose(a, b, rtol=1e-4, atol=1e-6, msg=a.name)

  def test_chunk_size_must_divide_the_batch_rows(self):
    with self.assertRaisesRegex(ValueError, 'gradient_chunk_size=3'):
      self._config(gradient_chunk_size=3)


if __name__ == '__main__':
  tf.test.main()
