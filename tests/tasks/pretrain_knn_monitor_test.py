"""The pretrain task's kNN monitor against the NumPy monitor on the same features (train_lib: pretrain_test)."""
import os

import numpy as np
import tensorflow as tf

from official.core import task_factory

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.evaluation import knn_monitor
from tests import fake_records
from tests.tasks.pretrain_test import tiny_pretrain_config


class PretrainKnnMonitorTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.train_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train.tfrecord'), 6)
    self.validation_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'val.tfrecord'), 6, seed=1)

  def test_aggregation_matches_the_monitor_on_the_collected_features(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.knn_monitor.enabled = True
    config.task.knn_monitor.k = 2
    task = task_factory.get_task(config.task)
    model = task.build_model()
    state, features, labels = None, [], []
    for batch in task.build_inputs(config.task.validation_data).take(3):
      outputs = task.validation_step(batch, model)
      # As under a 2-replica strategy: a tuple of per-replica values.
      halves = {k: (v[:1], v[1:]) for k, v in outputs.items() if k.startswith('knn_')}
      state = task.aggregate_logs(state, halves)
      features.append(outputs['knn_features'].numpy())
      labels.append(outputs['knn_labels'].numpy())
    self.assertEqual(np.concatenate(features).shape[0], 6)
    expected = knn_monitor.weighted_knn_top1(np.concatenate(features), np.concatenate(labels), k=2)
    self.assertAllClose(task.reduce_aggregated_logs(state)['knn_top1'], expected)

  def test_disabled_monitor_adds_nothing(self):
    config = tiny_pretrain_config(self.train_path, self.validation_path)
    config.task.knn_monitor.enabled = False  # The demo experiment (and so the tiny config) turns it on.
    task = task_factory.get_task(config.task)
    batch = next(iter(task.build_inputs(config.task.validation_data)))
    self.assertEqual(set(task.validation_step(batch, task.build_model())), {'loss'})
    self.assertIsNone(task.aggregate_logs(None, {'loss': 1.0}))
    self.assertEqual(task.reduce_aggregated_logs(None), {})


if __name__ == '__main__':
  tf.test.main()
