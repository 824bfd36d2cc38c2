"""Every registered CVRL experiment and every YAML file in experiments/ loads strictly and validates."""
import glob
import os

from absl.testing import parameterized
import tensorflow as tf
import yaml

from official.core import exp_factory
from official.modeling import hyperparams

from official_cvrl import registry_imports  # pylint: disable=unused-import

_REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_YAML_FILES = sorted(glob.glob(os.path.join(_REPO, 'experiments', '*.yaml')))
_CVRL_EXPERIMENTS = sorted(name for name in exp_factory._REGISTERED_CONFIGS if name.startswith('cvrl_'))  # pylint: disable=protected-access


def _experiment_of_yaml(path):
  """The experiment a YAML file overrides, read from its header comment `# Experiment: <name> ...`."""
  with open(path) as f:
    for line in f:
      if line.startswith('# Experiment:'):
        return line.split(':', 1)[1].split()[0]
  raise AssertionError(f'{path} has no "# Experiment: <name>" header line.')


class RegisteredExperimentsTest(tf.test.TestCase, parameterized.TestCase):

  def test_paper_experiments_are_registered(self):
    for name in ('cvrl_pretrain_kinetics400', 'cvrl_pretrain_kinetics600', 'cvrl_pretrain_demo'):
      self.assertIn(name, _CVRL_EXPERIMENTS)

  @parameterized.parameters(*_CVRL_EXPERIMENTS)
  def test_experiment_validates(self, name):
    config = exp_factory.get_exp_config(name)
    config.validate()
    config.task.validate()
    # Round trip through YAML with a safe loader: no python tags, every key accepted back strictly.
    text = yaml.safe_dump(config.as_dict())
    reloaded = exp_factory.get_exp_config(name)
    reloaded.override(yaml.safe_load(text), is_strict=True)
    # YAML has no tuples: compare through the same safe dump.
    self.assertEqual(yaml.safe_dump(reloaded.as_dict()), text)

  def test_pretrain_kinetics400_matches_paper(self):
    config = exp_factory.get_exp_config('cvrl_pretrain_kinetics400')
    task = config.task
    self.assertEqual(task.model.backbone.type, 'r3d')
    self.assertEqual(task.model.backbone.r3d.model_id, 50)
    self.assertTrue(task.model.norm_activation.use_sync_bn)
    self.assertEqual(task.model.projection_head.num_hidden_layers, 3)
    self.assertEqual(task.model.projection_head.output_dim, 128)
    self.assertEqual(tuple(task.train_data.feature_shape), (16, 224, 224, 3))
    self.assertEqual(task.train_data.temporal_stride, 2)
    self.assertEqual(task.train_data.global_batch_size, 1024)
    self.assertAllClose(task.losses.temperature, 0.1)
    optimizer = config.trainer.optimizer_config
    self.assertEqual(optimizer.optimizer.type, 'sgd')
    self.assertAllClose(optimizer.optimizer.sgd.momentum, 0.9)
    self.assertAllClose(optimizer.learning_rate.cosine.initial_learning_rate, 0.32)
    steps_per_epoch = 215570 // 1024
    self.assertEqual(config.trainer.train_steps, 800 * steps_per_epoch)
    self.assertEqual(optimizer.warmup.linear.warmup_steps, 5 * steps_per_epoch)

  def test_unknown_key_is_rejected(self):
    config = exp_factory.get_exp_config('cvrl_pretrain_kinetics400')
    with self.assertRaisesRegex(KeyError, 'tempreature'):
      config.override({'task': {'losses': {'tempreature': 0.2}}}, is_strict=True)

  def test_bad_interval_distribution_is_rejected(self):
    config = exp_factory.get_exp_config('cvrl_pretrain_kinetics400')
    config.override({'task': {'train_data': {'temporal_augmentation': {'interval_distribution': 'bell'}}}})
    with self.assertRaisesRegex(ValueError, 'interval_distribution'):
      config.task.validate()


class YamlFilesTest(tf.test.TestCase, parameterized.TestCase):

  def test_there_are_yaml_files(self):
    self.assertNotEmpty(_YAML_FILES)

  @parameterized.parameters(*_YAML_FILES)
  def test_yaml_loads_strictly_and_validates(self, path):
    with open(path) as f:
      overrides = yaml.safe_load(f)  # Fails on !!python tags.
    config = exp_factory.get_exp_config(_experiment_of_yaml(path))
    config.override(overrides, is_strict=True)
    config.validate()
    config.task.validate()
    self.assertIsInstance(config, hyperparams.Config)

  @parameterized.parameters(*_YAML_FILES)
  def test_schedule_is_consistent(self, path):
    """Warm-up + cosine decay cover exactly train_steps, so the learning rate reaches zero at the end."""
    with open(path) as f:
      overrides = yaml.safe_load(f)
    config = exp_factory.get_exp_config(_experiment_of_yaml(path))
    config.override(overrides, is_strict=True)
    optimizer = config.trainer.optimizer_config
    if optimizer.learning_rate.type != 'cosine':
      self.skipTest('not a cosine schedule')
    warmup = optimizer.warmup.linear.warmup_steps if optimizer.warmup.type == 'linear' else 0
    self.assertEqual(optimizer.learning_rate.cosine.offset, warmup)
    self.assertEqual(optimizer.learning_rate.cosine.decay_steps + warmup, config.trainer.train_steps)


if __name__ == '__main__':
  tf.test.main()
