"""Every registered CVRL experiment and every YAML file in experiments/ loads strictly and validates."""
import glob
import math
import os
import typing

from absl.testing import parameterized
import tensorflow as tf
import yaml

from official.core import exp_factory
from official.modeling import hyperparams
from official.modeling import optimization
from official.modeling.hyperparams import params_dict

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


def _experiment_with_yaml(path):
  """The experiment of `path` with the file applied as the driver applies --config_file."""
  config = exp_factory.get_exp_config(_experiment_of_yaml(path))
  return hyperparams.override_params_dict(config, path, is_strict=True)


def _is_float_annotation(annotation) -> bool:
  """float, Optional[float], or a tuple/list whose elements are floats."""
  if annotation is float:
    return True
  args = [a for a in typing.get_args(annotation) if a is not type(None) and a is not Ellipsis]
  return bool(args) and all(a is float for a in args)


def _float_fields(config, prefix=''):
  """(dotted key, value) of every field whose dataclass annotation is float-valued, walking sub-configs."""
  hints = typing.get_type_hints(type(config)) if hasattr(type(config), '__dataclass_fields__') else {}
  for name, value in config.__dict__.items():
    if name in config.RESERVED_ATTR:
      continue
    if name in hints and _is_float_annotation(hints[name]):
      yield f'{prefix}{name}', value
    if isinstance(value, params_dict.ParamsDict):
      yield from _float_fields(value, f'{prefix}{name}.')


def _yaml_float_values(overrides, config, prefix=''):
  """(dotted key, value) of every value a YAML mapping writes to a float-declared field of `config`."""
  hints = typing.get_type_hints(type(config)) if hasattr(type(config), '__dataclass_fields__') else {}
  for name, value in overrides.items():
    if isinstance(value, dict):
      yield from _yaml_float_values(value, getattr(config, name), f'{prefix}{name}.')
    elif name in hints and _is_float_annotation(hints[name]):
      yield f'{prefix}{name}', value


def _holds_floats(value) -> bool:
  if value is None:
    return True
  if isinstance(value, (list, tuple)):
    return all(type(v) is float for v in value)  # pylint: disable=unidiomatic-typecheck
  return type(value) is float  # pylint: disable=unidiomatic-typecheck


def _schedule_cases():
  """(experiment, YAML path or None) for every registered experiment alone and with each of its YAML files."""
  cases = [(name, None) for name in _CVRL_EXPERIMENTS]
  cases += [(_experiment_of_yaml(path), path) for path in _YAML_FILES]
  return cases


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
  def test_yaml_writes_floats_where_floats_are_declared(self, path):
    """The files themselves write `32.0`, not `32`: a copy edited by hand stays a float."""
    with open(path) as f:
      overrides = yaml.safe_load(f)
    config = exp_factory.get_exp_config(_experiment_of_yaml(path))
    for key, value in _yaml_float_values(overrides, config):
      self.assertTrue(_holds_floats(value), f'{os.path.basename(path)}: {key}={value!r} should be written as a float')

  @parameterized.parameters(*_YAML_FILES)
  def test_every_float_field_holds_a_float_after_loading(self, path):
    config = _experiment_with_yaml(path)
    config.validate()
    fields = dict(_float_fields(config))
    self.assertIn('trainer.optimizer_config.learning_rate.cosine.initial_learning_rate', fields)
    for key, value in fields.items():
      self.assertTrue(_holds_floats(value), f'{key}={value!r} ({type(value).__name__}) in {path}')

  @parameterized.parameters(*_CVRL_EXPERIMENTS)
  def test_integers_given_for_floats_are_widened(self, name):
    """YAML `32` or `--params_override=...=32` where a float is declared: stored as 32.0 (issue 16)."""
    config = exp_factory.get_exp_config(name)
    override = ('trainer.optimizer_config.learning_rate.cosine.initial_learning_rate=32,'
                'trainer.optimizer_config.optimizer.sgd.momentum=1')
    if config.trainer.optimizer_config.learning_rate.type != 'cosine':
      override = 'trainer.optimizer_config.learning_rate.stepwise.values=[2,1]'
    config = hyperparams.override_params_dict(config, override, is_strict=True)
    config.validate()
    for key, value in _float_fields(config):
      self.assertTrue(_holds_floats(value), f'{key}={value!r} ({type(value).__name__})')

  @parameterized.parameters(*_schedule_cases())
  def test_optimizer_and_schedule_build(self, name, path):
    """Model Garden's OptimizerFactory, as create_trainer uses it, against the schedule's analytic values."""
    config = _experiment_with_yaml(path) if path else exp_factory.get_exp_config(name)
    config.validate()
    optimizer_config = config.trainer.optimizer_config
    factory = optimization.OptimizerFactory(optimizer_config)
    learning_rate = factory.build_learning_rate()
    factory.build_optimizer(learning_rate)
    if optimizer_config.learning_rate.type == 'cosine':
      cosine = optimizer_config.learning_rate.cosine
      warmup = optimizer_config.warmup.linear.warmup_steps if optimizer_config.warmup.type == 'linear' else 0
      peak = cosine.initial_learning_rate
      expected = {warmup: peak, warmup + cosine.decay_steps // 2: peak * 0.5 * (1 + math.cos(
          math.pi * (cosine.decay_steps // 2) / cosine.decay_steps)), config.trainer.train_steps: 0.0}
    else:
      stepwise = optimizer_config.learning_rate.stepwise
      expected = {0: stepwise.values[0]}
      expected.update({b + 1: v for b, v in zip(stepwise.boundaries, stepwise.values[1:])})
    for step, value in expected.items():
      self.assertAllClose(float(learning_rate(step)), value, rtol=1e-5, atol=1e-7, msg=f'step {step}')

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
