"""Reads the overrides of an experiment (--config_file YAML files, --params_override strings) safely and exactly.

Model Garden's `override_params_dict` loads YAML with PyYAML's FullLoader and reads `--params_override` with a
comma-separated parser whose values are then parsed as YAML. Three things go wrong for users there:
- a Python tag (`!!python/tuple`) in a YAML file is silently accepted or fails with a constructor traceback;
  `load_yaml_file` accepts plain YAML only and names the file and line otherwise;
- a value with braces, such as the `{split}` and `{label_percent}` placeholders of the evaluation input paths, is
  read as a YAML flow mapping unless it happens to start with `/`, `g`, `s` or `:` (Model Garden quotes those);
  `parse_params_override` quotes every unquoted value that contains a brace first;
- absl keeps only the last of several `--params_override` flags; `params_override_values` finds them all, so the
  driver can merge them in order (`merge`).
An override key that the experiment does not have is reported with its full dotted path (`unknown_keys`).
`build_experiment` puts these together as the training driver needs them.
"""
import json
import re
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import tensorflow as tf
import yaml

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling.hyperparams import params_dict

from official_cvrl.utils import errors


class PlainYamlLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
  """PyYAML's safe loader (no Python tags) that also reads `1e-6` as a float, as Model Garden's loader does.

  YAML 1.1 requires a dot in a float, so a plain safe loader would read `1e-6` as a string.
  """


PlainYamlLoader.add_implicit_resolver(
    'tag:yaml.org,2002:float',
    re.compile(r'^[-+]?(?:[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?|[0-9][0-9_]*[eE][-+]?[0-9]+|\.[0-9_]+'
               r'(?:[eE][-+]?[0-9]+)?)$'),
    list('-+0123456789.'))

_PYTHON_TAG_PREFIX = 'tag:yaml.org,2002:python/'


def _python_tag(error: yaml.MarkedYAMLError) -> Optional[str]:
  problem = str(error.problem or '')
  match = re.search(r"'(tag:yaml\.org,2002:python/[^']*)'", problem)
  if match:
    return '!!' + match.group(1)[len('tag:yaml.org,2002:'):]
  if _PYTHON_TAG_PREFIX in problem:
    return '!!python/...'
  return None


def _position(error: yaml.MarkedYAMLError) -> str:
  mark = error.problem_mark or error.context_mark
  return f'line {mark.line + 1}, column {mark.column + 1}' if mark else 'unknown position'


def load_yaml_text(text: str, source: str) -> Any:
  """Parses `text` as plain YAML; `source` (a file name or a flag) is named in the error.

  Raises:
    errors.UserInputError: a Python tag, or text that is not YAML.
  """
  try:
    return yaml.load(text, Loader=PlainYamlLoader)
  except yaml.constructor.ConstructorError as e:
    tag = _python_tag(e)
    if tag is None:
      raise errors.UserInputError(f'{source}: {e.problem} at {_position(e)}.') from None
    raise errors.UserInputError(
        f'{source}: {tag} at {_position(e)} is a Python tag; only plain YAML is accepted (mappings, lists, '
        'numbers, strings, true/false, null); write a tuple as a list [a, b]. Python tags are never run.'
    ) from None
  except yaml.YAMLError as e:
    detail = f'{e.problem} at {_position(e)}' if isinstance(e, yaml.MarkedYAMLError) else str(e)
    raise errors.UserInputError(f'{source}: not valid YAML ({detail}).') from None


def load_yaml_file(path: str, flag: str = '--config_file') -> Dict[str, Any]:
  """Reads an override file (local or gs://) as a plain-YAML mapping.

  Raises:
    errors.UserInputError: the file is missing, unreadable, not plain YAML, or not a mapping of keys.
  """
  source = f'{flag}={path}'
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      text = f.read()
  except tf.errors.NotFoundError:
    raise errors.UserInputError(f'{source}: no such file.') from None
  except (tf.errors.OpError, UnicodeDecodeError) as e:
    raise errors.UserInputError(f'{source}: cannot be read ({getattr(e, "message", e)}).') from None
  loaded = load_yaml_text(text, source)
  if loaded is None:
    return {}
  if not isinstance(loaded, dict):
    raise errors.UserInputError(f'{source}: must be a YAML mapping of config keys (e.g. "task:" sections), '
                                f'got a {type(loaded).__name__}.')
  return loaded


# One `name[index]=value` item of Model Garden's comma-separated override syntax (same alternatives for the value).
_ITEM = re.compile(r"""
  (?P<name>[a-zA-Z][\w.]*(?:\[[0-9]*\])?)\s*=\s*
  (?P<value>'[^']*'|"[^"]*"|\[[^\]]*\]|[^,\[]*)
  (?P<separator>$|,\s*)""", re.VERBOSE)


def quote_braced_values(text: str) -> str:
  """Quotes the unquoted values of a `key=value,...` override string that contain `{` or `}`.

  `task.train_data.input_path=data/ucf101_split{split}/train-*` becomes `...input_path='data/...{split}/train-*'`,
  so Model Garden's parser keeps it as a string instead of reading a YAML flow mapping. Text that is not in the
  comma-separated form (a YAML/JSON string, a file path) is returned unchanged.
  """
  items = []
  pos = 0
  while pos < len(text):
    match = _ITEM.match(text, pos)
    if not match or match.end() == pos:
      return text
    pos = match.end()
    value = match.group('value')
    if ('{' in value or '}' in value) and value[:1] not in ('"', "'", '['):
      value = f"'{value}'" if "'" not in value else f'"{value}"'
    items.append(f"{match.group('name')}={value}")
  return ','.join(items)


def parse_params_override(text: str, flag: str = '--params_override') -> Dict[str, Any]:
  """One `--params_override` value (`a.b=1,c=x`, a YAML/JSON mapping, or a YAML file path) as a nested dict.

  Raises:
    errors.UserInputError: the value is none of these forms, or uses a Python tag.
  """
  if not text:
    return {}
  try:
    yaml_text = params_dict.nested_csv_str_to_json_str(quote_braced_values(text))
  except ValueError:
    yaml_text = text  # Not the comma-separated form: a YAML/JSON string or a file name.
  loaded = load_yaml_text(yaml_text, f'{flag}={text}')
  if isinstance(loaded, dict):
    return loaded
  if isinstance(loaded, str) and tf.io.gfile.exists(text):
    return load_yaml_file(text, flag=flag)
  raise errors.UserInputError(
      f'{flag}={text}: expected comma-separated key=value pairs (e.g. task.train_data.global_batch_size=8,'
      'trainer.train_steps=100), a YAML/JSON mapping, or a YAML file that exists.')


def params_override_values(argv: Sequence[str]) -> List[str]:
  """Every value given to --params_override on the command line `argv` (absl keeps only the last one)."""
  values = []
  args = list(argv[1:])
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == '--':
      break
    for prefix in ('--params_override', '-params_override'):
      if arg.startswith(prefix + '='):
        values.append(arg[len(prefix) + 1:])
      elif arg == prefix and i + 1 < len(args):
        values.append(args[i + 1])
        i += 1
    i += 1
  return values


def merge(overrides: Iterable[Mapping[str, Any]]) -> Dict[str, Any]:
  """Deep-merges override mappings in order: a later value for the same key wins, sections merge key by key."""
  merged: Dict[str, Any] = {}
  for override in overrides:
    _merge_into(merged, override)
  return merged


def _merge_into(target: Dict[str, Any], override: Mapping[str, Any]) -> None:
  for key, value in override.items():
    if isinstance(value, Mapping) and isinstance(target.get(key), dict):
      _merge_into(target[key], value)
    elif isinstance(value, Mapping):
      target[key] = {}
      _merge_into(target[key], value)
    else:
      target[key] = value


def to_override_string(override: Mapping[str, Any]) -> str:
  """An override mapping as a string Model Garden's `override_params_dict` reads back to the same mapping."""
  return json.dumps(override)


def unknown_keys(config: params_dict.ParamsDict, override: Mapping[str, Any], prefix: str = '') -> List[str]:
  """Dotted keys of `override` that `config` does not have (a strict override would fail on them)."""
  unknown = []
  for key, value in override.items():
    dotted = f'{prefix}{key}'
    if key in config.RESERVED_ATTR or key not in config.__dict__:
      unknown.append(dotted)
      continue
    current = config.__dict__[key]
    if isinstance(value, Mapping) and isinstance(current, params_dict.ParamsDict):
      unknown.extend(unknown_keys(current, value, prefix=f'{dotted}.'))
  return unknown


def apply(params: params_dict.ParamsDict, override: Mapping[str, Any], source: str) -> None:
  """A strict override of `params` whose errors name `source` (a flag) and the full dotted key.

  Raises:
    errors.UserInputError: an unknown key, or a value Model Garden cannot store (e.g. a nested list).
  """
  unknown = unknown_keys(params, override)
  if unknown:
    raise errors.UserInputError(
        f'{source}: unknown key {unknown[0]}: every key must exist in the experiment (README, "Experiments"); '
        'check spelling and nesting.')
  try:
    params.override(dict(override), is_strict=True)
  except (KeyError, ValueError, TypeError) as e:
    raise errors.UserInputError(f'{source}: {e.args[0] if e.args else repr(e)}') from None


def build_experiment(experiment: str, config_files: Sequence[str] = (),
                     params_overrides: Sequence[str] = ()) -> Tuple[cfg.ExperimentConfig, Dict[str, Any]]:
  """The registered `experiment` with the YAML files, then the `--params_override` values, applied and validated.

  Args:
    experiment: a registered experiment name.
    config_files: YAML files, applied in order.
    params_overrides: every `--params_override` value, applied in order after the files.

  Returns:
    The unlocked, validated config, and the merged `--params_override` mapping (for a driver that parses its
    flags again: `to_override_string` of it reads back to the same mapping).

  Raises:
    errors.UserInputError: an unknown experiment or key, a file that is not plain YAML, a value of the wrong
      type, or a failed check of the experiment or its task; the message names the flag or key.
  """
  try:
    params = exp_factory.get_exp_config(experiment)
  except LookupError:
    registered = exp_factory._REGISTERED_CONFIGS  # pylint: disable=protected-access
    known = sorted(name for name in registered if name.startswith('cvrl_'))
    raise errors.UserInputError(f'--experiment={experiment} is not a registered experiment; the CVRL ones are '
                                f'{", ".join(known)} (README, "Experiments").') from None
  for path in config_files:
    apply(params, load_yaml_file(path), f'--config_file={path}')
  merged = merge(parse_params_override(value) for value in params_overrides)
  apply(params, merged, '--params_override')
  try:
    params.validate()
  except (KeyError, ValueError, TypeError) as e:
    sources = [f'--experiment={experiment}'] + [f'--config_file={path}' for path in config_files]
    sources += ['--params_override'] if params_overrides else []
    raise errors.UserInputError(f'invalid experiment configuration: {e.args[0] if e.args else repr(e)} '
                                f'({", ".join(sources)})') from None
  return params, merged
