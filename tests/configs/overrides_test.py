"""overrides: plain-YAML files, --params_override with placeholders, several overrides merged, keys named."""
import os

from absl.testing import parameterized
import tensorflow as tf
import yaml

from official.core import exp_factory
from official.modeling import hyperparams

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import overrides
from official_cvrl.utils import errors

_SPLIT_PATH = 'data/ucf101_split{split}/train-*'
_PERCENT_PATH = 'data/kinetics400_train_{label_percent}pct/train-*'


class YamlFileTest(tf.test.TestCase, parameterized.TestCase):

  def _write(self, text):
    path = os.path.join(self.get_temp_dir(), f'override_{abs(hash(text))}.yaml')
    with open(path, 'w') as f:
      f.write(text)
    return path

  @parameterized.parameters(
      ('task:\n  train_data:\n    feature_shape: !!python/tuple [4, 32, 32, 3]\n', '!!python/tuple'),
      ('task:\n  init_checkpoint: !!python/object/apply:os.getcwd []\n', '!!python/object/apply:os.getcwd'),
  )
  def test_python_tag_names_file_and_says_plain_yaml(self, text, tag):
    path = self._write(text)
    with self.assertRaises(errors.UserInputError) as raised:
      overrides.load_yaml_file(path)
    message = str(raised.exception)
    self.assertStartsWith(message, f'--config_file={path}: {tag} at line ')
    self.assertIn('only plain YAML is accepted', message)

  def test_plain_yaml_reads_exponents_as_floats_like_model_garden(self):
    path = self._write('task:\n  losses:\n    l2_weight_decay: 1e-6\n    temperature: .5\n')
    self.assertEqual(overrides.load_yaml_file(path),
                     {'task': {'losses': {'l2_weight_decay': 1e-6, 'temperature': 0.5}}})

  def test_missing_and_broken_files(self):
    missing = os.path.join(self.get_temp_dir(), 'absent.yaml')
    with self.assertRaisesRegex(errors.UserInputError, r'^--config_file=.*absent\.yaml: no such file\.$'):
      overrides.load_yaml_file(missing)
    with self.assertRaisesRegex(errors.UserInputError, r'^--config_file=.*: not valid YAML \(.* line 2'):
      overrides.load_yaml_file(self._write('task:\n\tlosses: 1\n'))
    with self.assertRaisesRegex(errors.UserInputError, 'must be a YAML mapping'):
      overrides.load_yaml_file(self._write('- 1\n- 2\n'))


class ParamsOverrideTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(
      (f'task.train_data.input_path={_SPLIT_PATH}', {'task': {'train_data': {'input_path': _SPLIT_PATH}}}),
      (f'task.train_data.input_path={_PERCENT_PATH},task.label_fraction=0.1',
       {'task': {'train_data': {'input_path': _PERCENT_PATH}, 'label_fraction': 0.1}}),
      (f"task.train_data.input_path='{_SPLIT_PATH}'", {'task': {'train_data': {'input_path': _SPLIT_PATH}}}),
      (f'task.train_data.input_path=/abs/{_SPLIT_PATH}',
       {'task': {'train_data': {'input_path': f'/abs/{_SPLIT_PATH}'}}}),
      ('task.train_data.feature_shape=[4,32,32,3],task.init_checkpoint=\'\'',
       {'task': {'train_data': {'feature_shape': [4, 32, 32, 3]}, 'init_checkpoint': ''}}),
      ('{task: {losses: {temperature: 0.2}}}', {'task': {'losses': {'temperature': 0.2}}}),
  )
  def test_parses_every_documented_form(self, text, expected):
    self.assertEqual(overrides.parse_params_override(text), expected)

  def test_model_garden_alone_fails_on_a_relative_placeholder_path(self):
    """The reason for quoting: Model Garden's parser reads the braces as a YAML flow mapping (issue 16)."""
    config = exp_factory.get_exp_config('cvrl_finetune_ucf101')
    with self.assertRaises(yaml.YAMLError):
      hyperparams.override_params_dict(config, f'task.train_data.input_path={_SPLIT_PATH}', is_strict=True)

  def test_quoted_string_reads_back_in_model_garden(self):
    """What the driver hands to Model Garden's own parser gives the same config."""
    override = overrides.parse_params_override(
        f'task.train_data.input_path={_SPLIT_PATH},task.validation_data.input_path=data/ucf101_split{{split}}/test-*')
    config = exp_factory.get_exp_config('cvrl_finetune_ucf101')
    config = hyperparams.override_params_dict(config, overrides.to_override_string(override), is_strict=True)
    self.assertEqual(config.task.train_data.input_path, _SPLIT_PATH)
    self.assertEqual(config.task.validation_data.input_path, 'data/ucf101_split{split}/test-*')
    config.validate()
    self.assertEqual(config.task.resolve_input_path(config.task.train_data.input_path), 'data/ucf101_split1/train-*')

  def test_yaml_file_given_as_params_override(self):
    path = os.path.join(self.get_temp_dir(), 'o.yaml')
    with open(path, 'w') as f:
      f.write('trainer:\n  train_steps: 7\n')
    self.assertEqual(overrides.parse_params_override(path), {'trainer': {'train_steps': 7}})

  def test_not_an_override(self):
    with self.assertRaisesRegex(errors.UserInputError, r'^--params_override=no_such_file\.yaml: expected'):
      overrides.parse_params_override('no_such_file.yaml')

  def test_every_params_override_flag_is_found_in_order(self):
    argv = ['train', '--experiment=x', '--params_override=a.b=1', '--mode', 'train', '--params_override', 'c=2',
            '--', '--params_override=ignored']
    self.assertEqual(overrides.params_override_values(argv), ['a.b=1', 'c=2'])

  def test_merge_is_deep_and_later_wins(self):
    merged = overrides.merge([{'task': {'a': 1, 'b': {'c': 2}}}, {'task': {'b': {'d': 3}, 'a': 4}}, {'x': 5}])
    self.assertEqual(merged, {'task': {'a': 4, 'b': {'c': 2, 'd': 3}}, 'x': 5})


class BuildExperimentTest(tf.test.TestCase, parameterized.TestCase):

  def test_two_params_overrides_are_both_applied(self):
    config, merged = overrides.build_experiment(
        'cvrl_pretrain_demo', params_overrides=['trainer.train_steps=7', 'task.losses.temperature=0.2'])
    self.assertEqual(config.trainer.train_steps, 7)
    self.assertAllClose(config.task.losses.temperature, 0.2)
    self.assertEqual(merged, {'trainer': {'train_steps': 7}, 'task': {'losses': {'temperature': 0.2}}})

  def test_placeholder_paths_through_params_override(self):
    config, _ = overrides.build_experiment(
        'cvrl_semi_supervised_kinetics400',
        params_overrides=[f'task.train_data.input_path={_PERCENT_PATH}',
                          'task.validation_data.input_path=data/kinetics400/val-*'])
    self.assertEqual(config.task.resolve_input_path(config.task.train_data.input_path),
                     'data/kinetics400_train_1pct/train-*')

  def test_integer_learning_rate_from_a_yaml_file(self):
    path = os.path.join(self.get_temp_dir(), 'lr.yaml')
    with open(path, 'w') as f:
      f.write('trainer:\n  optimizer_config:\n    learning_rate:\n      cosine:\n        initial_learning_rate: 32\n')
    config, _ = overrides.build_experiment('cvrl_linear_eval_kinetics400', config_files=[path])
    value = config.trainer.optimizer_config.learning_rate.cosine.initial_learning_rate
    self.assertIs(type(value), float)
    self.assertEqual(value, 32.0)

  @parameterized.parameters(
      # (experiment, override, message): wrong types and failed checks, for every experiment family.
      ('cvrl_pretrain_demo', 'trainer.train_steps=abc', "trainer.train_steps='abc' is not an integer."),
      ('cvrl_linear_eval_demo', 'task.train_data.global_batch_size=abc',
       "task.train_data.global_batch_size='abc' is not an integer."),
      ('cvrl_action_detection_demo', 'task.train_data.temporal_stride=[1,2]',
       'task.train_data.temporal_stride=[1, 2] is not an integer.'),
      ('cvrl_finetune_ucf101', 'task.validation_data.feature_shape=16',
       'task.validation_data.feature_shape=16 is not a list of integers.'),
      ('cvrl_pretrain_kinetics400', 'task.losses.temperature=0', 'task.losses.temperature must be > 0, got 0.0.'),
      ('cvrl_pretrain_demo', 'task.train_data.temporal_augmentation.interval_distribution=foo',
       "task.train_data.temporal_augmentation.interval_distribution='foo'; expected one of"),
  )
  def test_configuration_mistake_names_the_key(self, experiment, override, message):
    with self.assertRaises(errors.UserInputError) as raised:
      overrides.build_experiment(experiment, params_overrides=[override])
    self.assertStartsWith(str(raised.exception), f'invalid experiment configuration: {message}')
    self.assertIn(f'--experiment={experiment}', str(raised.exception))

  def test_unknown_key_is_named_with_its_full_path(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                r'^--params_override: unknown key task\.train_data\.temporal_strid: '):
      overrides.build_experiment('cvrl_linear_eval_ucf101', params_overrides=['task.train_data.temporal_strid=2'])

  def test_unknown_experiment(self):
    with self.assertRaisesRegex(errors.UserInputError,
                                r'^--experiment=cvrl_nope is not a registered .*cvrl_pretrain_demo'):
      overrides.build_experiment('cvrl_nope')


if __name__ == '__main__':
  tf.test.main()
