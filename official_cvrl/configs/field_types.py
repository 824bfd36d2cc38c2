"""Checks every config value against the type its dataclass field declares, and widens integers to floats.

Model Garden's `hyperparams.Config` stores whatever YAML or `--params_override` hands it: `abc` for an integer
field, `16` for a shape, `[1, 2]` for a stride. Such a value travels unnoticed into the input pipeline or the
optimizer and fails there with a TypeError or a NumPy error that names no key. An integer where a float is
declared is worse: it is a valid number to a user (`initial_learning_rate: 32`), yet Model Garden's learning rate
schedules then build int32 tensors and `create_trainer` dies. `conform` walks a config tree with the declared
field types, turns such integers into floats and (when asked) rejects every other mismatch with the dotted key,
the value and what the field accepts.
"""
import collections.abc
import dataclasses
import types
import typing
from typing import Any

from official.modeling.hyperparams import base_config
from official.modeling.hyperparams import params_dict


class FieldTypeError(ValueError):
  """A config value that does not have its field's declared type; the message names the key."""


_SEQUENCE_ORIGINS = (list, tuple, collections.abc.Sequence, collections.abc.MutableSequence)


def _is_union(annotation) -> bool:
  return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _is_sequence(annotation) -> bool:
  origin = typing.get_origin(annotation)
  if origin is None:
    return False
  try:
    return origin in _SEQUENCE_ORIGINS or issubclass(origin, (list, tuple))
  except TypeError:
    return False


def _is_config_class(annotation) -> bool:
  return isinstance(annotation, type) and issubclass(annotation, params_dict.ParamsDict)


def _is_int(value) -> bool:
  # bool is a subclass of int, but `true` is never meant as a count.
  return isinstance(value, int) and not isinstance(value, bool)


def describe(annotation) -> str:
  """What a field of type `annotation` accepts, in words ('an integer', 'a list of 2 numbers', ...)."""
  if annotation is bool:
    return 'true or false'
  if annotation is int:
    return 'an integer'
  if annotation is float:
    return 'a number'
  if annotation is str:
    return 'a string'
  if _is_config_class(annotation):
    return 'a section of keys (a YAML mapping, or section.key=value)'
  if _is_union(annotation):
    alternatives = [a for a in typing.get_args(annotation) if a is not type(None)]
    return ' or '.join(describe(a) for a in alternatives)
  if _is_sequence(annotation):
    args = typing.get_args(annotation)
    if not args:
      return 'a list'
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
      element = describe(args[0])
      return f'a list of {_plural(element)}'
    if len(set(args)) == 1:
      return f'a list of {len(args)} {_plural(describe(args[0]))}'
    return 'a list [' + ', '.join(describe(a) for a in args) + ']'
  return str(annotation)


def _plural(description: str) -> str:
  words = {'an integer': 'integers', 'a number': 'numbers', 'a string': 'strings', 'true or false': 'booleans'}
  return words.get(description, description)


def _fail(key: str, value: Any, annotation) -> FieldTypeError:
  return FieldTypeError(f'{key}={value!r} is not {describe(annotation)}.')


def conform_value(value: Any, annotation, key: str) -> Any:
  """Returns `value` as the type `annotation` declares (integers widened to floats), or raises FieldTypeError.

  Annotations this module does not model (Any, Dict, classes other than configs) accept any value; None is
  accepted everywhere, because Model Garden declares many optional fields without `Optional`.
  """
  if value is None or annotation is Any:
    return value
  if annotation is float:
    if _is_int(value):
      return float(value)
    if isinstance(value, float):
      return value
    raise _fail(key, value, annotation)
  if annotation is int:
    if _is_int(value):
      return value
    raise _fail(key, value, annotation)
  if annotation is bool or annotation is str:
    if isinstance(value, annotation):
      return value
    raise _fail(key, value, annotation)
  if _is_config_class(annotation):
    if isinstance(value, params_dict.ParamsDict):
      return value
    raise _fail(key, value, annotation)
  if _is_union(annotation):
    for alternative in typing.get_args(annotation):
      if alternative is type(None):
        continue
      try:
        return conform_value(value, alternative, key)
      except FieldTypeError:
        continue
    raise _fail(key, value, annotation)
  if _is_sequence(annotation):
    if not isinstance(value, (list, tuple)):
      raise _fail(key, value, annotation)
    args = typing.get_args(annotation)
    if not args:
      return value
    if len(args) == 1 or (len(args) == 2 and args[1] is Ellipsis):
      element_types = [args[0]] * len(value)
    elif len(args) == len(value):
      element_types = list(args)
    else:
      raise _fail(key, value, annotation)
    try:
      converted = [conform_value(v, t, f'{key}[{i}]') for i, (v, t) in enumerate(zip(value, element_types))]
    except FieldTypeError:
      raise _fail(key, value, annotation) from None
    return type(value)(converted)
  return value


def _annotations(config: params_dict.ParamsDict):
  if isinstance(config, base_config.Config) and dataclasses.is_dataclass(config):
    return type(config)._get_annotations()  # pylint: disable=protected-access
  return {}


def conform(config: params_dict.ParamsDict, prefix: str = '', raise_errors: bool = True) -> None:
  """Checks (and widens) every field of `config` and its sub-configs in place.

  Args:
    config: an unlocked config tree.
    prefix: dotted key of `config` in its experiment ('' for the experiment itself), used in messages.
    raise_errors: if True, the first mismatch raises FieldTypeError naming its key; if False, only the
      conversions are made (integers where floats are declared) and mismatches are left for a later check.

  Raises:
    FieldTypeError: a value does not have its declared type (only with `raise_errors`).
  """
  annotations = _annotations(config)
  for name, value in list(config.__dict__.items()):
    if name in config.RESERVED_ATTR:
      continue
    key = f'{prefix}{name}'
    annotation = annotations.get(name)
    if annotation is not None:
      try:
        converted = conform_value(value, annotation, key)
      except FieldTypeError:
        if raise_errors:
          raise
        converted = value
      if converted is not value:
        # Direct assignment: Config.__setattr__ would deep-copy sub-configs and refuse a locked config.
        config.__dict__[name] = converted
        value = converted
    _conform_children(value, key, raise_errors)


def _conform_children(value: Any, key: str, raise_errors: bool) -> None:
  if isinstance(value, params_dict.ParamsDict):
    conform(value, prefix=f'{key}.', raise_errors=raise_errors)
  elif isinstance(value, (list, tuple)):
    for i, element in enumerate(value):
      if isinstance(element, params_dict.ParamsDict):
        conform(element, prefix=f'{key}[{i}].', raise_errors=raise_errors)

