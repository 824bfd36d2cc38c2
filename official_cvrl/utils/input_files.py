"""Checks on `input_path` config values, done before TensorFlow builds a pipeline on them.

Without these, a typo in a glob or a folder of empty shards surfaces as an `OutOfRangeError` from deep inside
the training loop, minutes into a run.
"""
from typing import List, Sequence, Union

from absl import logging
import tensorflow as tf

from official_cvrl.utils import errors

_DATA_TOOLS_HINT = ('Create TFRecords with `python -m data_tools.convert` (see docs/data_preparation.md), or fix '
                    'the path with --params_override={key}=...')


def _patterns(input_path: Union[str, Sequence[str]]) -> List[str]:
  if isinstance(input_path, str):
    return [p for p in input_path.split(',') if p.strip()]
  return [str(p) for p in input_path]


def resolve_input_files(input_path: Union[str, Sequence[str]], key: str) -> List[str]:
  """Expands the comma-separated globs of `input_path` into a sorted list of files.

  Args:
    input_path: a glob, a comma-separated list of globs, or a list of globs.
    key: the config key the path came from, e.g. 'task.train_data.input_path', used in error messages.

  Returns:
    The matching file paths.

  Raises:
    UserInputError: `input_path` is empty or a pattern matches no file.
  """
  patterns = _patterns(input_path)
  if not patterns:
    raise errors.UserInputError(f'{key} is empty. ' + _DATA_TOOLS_HINT.format(key=key))
  files = []
  for pattern in patterns:
    matches = sorted(tf.io.gfile.glob(pattern.strip()))
    if not matches:
      raise errors.UserInputError(
          f'{key}: no file matches {pattern!r}. ' + _DATA_TOOLS_HINT.format(key=key))
    files.extend(matches)
  return files


def check_not_empty(files: Sequence[str], key: str) -> None:
  """Raises UserInputError if none of `files` holds a TFRecord record.

  Stops at the first record found, so on real data this reads a few bytes of the first file.
  """
  for path in files:
    try:
      for _ in tf.data.TFRecordDataset(path).take(1):
        return
    except tf.errors.DataLossError as e:
      raise errors.UserInputError(
          f'{key}: {path} is not a readable TFRecord file ({e.message.splitlines()[0]}). '
          'Check it with `python -m data_tools.verify`.') from None
  raise errors.UserInputError(
      f'{key}: the {len(files)} file(s) matched hold no records (first: {files[0]}). '
      + _DATA_TOOLS_HINT.format(key=key))


def check_data_config(params, key: str) -> List[str]:
  """Checks a data config's `file_type` and `input_path` before a pipeline is built on them.

  Args:
    params: a DataConfig with `name`, `file_type` and `input_path`.
    key: the config key of `params`, e.g. 'task.train_data', used in messages.

  Returns:
    The matching files.

  Raises:
    UserInputError: an unsupported file type, no matching file, or no record in the matching files.
  """
  if params.file_type != 'tfrecord':
    raise errors.UserInputError(
        f'{key}.file_type={params.file_type!r}: only tfrecord is supported (what data_tools.convert writes).')
  files = resolve_input_files(params.input_path, key=f'{key}.input_path')
  check_not_empty(files, key=f'{key}.input_path')
  logging.info('%s: dataset %s, %d file(s) matching %s.', key, params.name or '(unnamed)', len(files),
               params.input_path)
  return files
