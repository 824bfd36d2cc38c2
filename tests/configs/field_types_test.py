"""field_types: declared types of config fields are enforced, integers widened where floats are declared."""
import dataclasses
from typing import Optional, Sequence, Tuple, Union

from absl.testing import parameterized
import tensorflow as tf

from official.core import exp_factory
from official.modeling import hyperparams

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import field_types


@dataclasses.dataclass
class _Inner(hyperparams.Config):
  rate: float = 0.5
  shape: Tuple[int, ...] = (2, 3)
  pair: Tuple[float, float] = (0.1, 1.0)


@dataclasses.dataclass
class _Outer(hyperparams.Config):
  steps: int = 10
  enabled: bool = True
  name: str = 'x'
  threshold: Optional[float] = None
  path: Union[str, Sequence[str]] = ''
  inner: _Inner = dataclasses.field(default_factory=_Inner)


class ConformTest(tf.test.TestCase, parameterized.TestCase):

  def test_integers_become_floats_where_floats_are_declared(self):
    config = _Outer()
    config.override({'threshold': 3, 'inner': {'rate': 32, 'pair': [1, 2]}})
    field_types.conform(config)
    self.assertIs(type(config.threshold), float)
    self.assertIs(type(config.inner.rate), float)
    self.assertEqual(config.inner.rate, 32.0)
    self.assertEqual([type(v) for v in config.inner.pair], [float, float])
    self.assertEqual(list(config.inner.pair), [1.0, 2.0])

  @parameterized.parameters(
      ({'steps': 'abc'}, "steps='abc' is not an integer."),
      ({'steps': 2.5}, 'steps=2.5 is not an integer.'),
      ({'steps': True}, 'steps=True is not an integer.'),
      ({'enabled': 1}, 'enabled=1 is not true or false.'),
      ({'name': 7}, 'name=7 is not a string.'),
      ({'threshold': 'high'}, "threshold='high' is not a number."),
      ({'inner': {'rate': [1, 2]}}, 'inner.rate=[1, 2] is not a number.'),
      ({'inner': {'shape': 16}}, 'inner.shape=16 is not a list of integers.'),
      ({'inner': {'shape': [1, 'a']}}, "inner.shape=[1, 'a'] is not a list of integers."),
      ({'inner': {'pair': [0.1, 0.2, 0.3]}}, 'inner.pair=[0.1, 0.2, 0.3] is not a list of 2 numbers.'),
      ({'path': 3}, 'path=3 is not a string or a list of strings.'),
  )
  def test_mismatch_names_key_and_what_is_allowed(self, override, message):
    config = _Outer()
    config.override(override)
    with self.assertRaises(field_types.FieldTypeError) as raised:
      field_types.conform(config)
    self.assertEqual(str(raised.exception), message)

  def test_lenient_mode_converts_and_leaves_mismatches(self):
    config = _Outer()
    config.override({'steps': 'abc', 'inner': {'rate': 2}})
    field_types.conform(config, raise_errors=False)
    self.assertEqual(config.steps, 'abc')
    self.assertIs(type(config.inner.rate), float)

  def test_none_is_accepted_anywhere(self):
    config = _Outer()
    config.override({'steps': None, 'inner': {'rate': None}})
    field_types.conform(config)
    self.assertIsNone(config.steps)

  def test_section_given_a_scalar(self):
    config = _Outer()
    config.inner = 3
    with self.assertRaisesRegex(field_types.FieldTypeError, r'^inner=3 is not a section of keys'):
      field_types.conform(config)

  @parameterized.parameters('cvrl_pretrain_demo', 'cvrl_linear_eval_ucf101', 'cvrl_action_detection_demo')
  def test_experiment_validate_reports_dotted_key(self, name):
    config = exp_factory.get_exp_config(name)
    config.override({'task': {'train_data': {'global_batch_size': 'abc'}}})
    with self.assertRaisesRegex(ValueError, r"^task\.train_data\.global_batch_size='abc' is not an integer\.$"):
      config.validate()


if __name__ == '__main__':
  tf.test.main()
