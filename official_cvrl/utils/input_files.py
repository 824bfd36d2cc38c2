"""Checks on `input_path` config values, done before TensorFlow builds a pipeline on them.

Without these, a typo in a glob or a folder of empty shards surfaces as an `OutOfRangeError` from deep inside
the training loop, minutes into a run, and one truncated shard among thousands as a `DataLossError` that names no
file. So every matched file is checked before training, cheaply: a TFRecord file is a chain of records, each
`[length: uint64][masked crc32c of length: uint32][data][masked crc32c of data: uint32]`, and walking the 12-byte
headers (one small read per record, never the data) proves that a local file is a TFRecord file and ends exactly
after its last record (TensorFlow's reader itself takes a file that ends inside a record header for a shorter
file, and drops that record silently). Remote files (`gs://...`) get their first header and their size checked,
as every further read is a network request. Data checksums are left to TensorFlow's reader; `python -m
data_tools.verify` reads every record when a run still fails.
"""
import concurrent.futures
import os
import struct
from typing import List, Optional, Sequence, Tuple, Union

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


def _crc32c_table() -> Tuple[int, ...]:
  """Byte table of CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum TFRecord uses."""
  table = []
  for byte in range(256):
    crc = byte
    for _ in range(8):
      crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    table.append(crc)
  return tuple(table)


_CRC32C_TABLE = _crc32c_table()
_HEADER_BYTES = 12  # uint64 length + uint32 masked crc of the length.
_FOOTER_BYTES = 4  # uint32 masked crc of the data.
_REMOTE_THREADS = 16  # Remote header reads are network round trips: overlap them.


def crc32c(data: bytes) -> int:
  crc = 0xFFFFFFFF
  for byte in data:
    crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
  return crc ^ 0xFFFFFFFF


def masked_crc32c(data: bytes) -> int:
  """TFRecord's masked checksum: rotated and offset so that a CRC of CRCs is not trivially zero."""
  crc = crc32c(data)
  return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def _check_header(header: bytes, position: int, size: int, record: int) -> Tuple[Optional[str], int]:
  """Checks one record header read at `position`; returns (problem or None, position of the next record)."""
  if len(header) < _HEADER_BYTES:
    if record == 0:
      return f'is not a TFRecord file (only {size} bytes, less than one record header)', size
    return (f'is truncated: the file ends at byte {size}, inside the header of record {record} at byte '
            f'{position}'), size
  length, = struct.unpack('<Q', header[:8])
  if struct.unpack('<I', header[8:])[0] != masked_crc32c(header[:8]):
    if record == 0:
      return 'is not a TFRecord file (its first bytes are not a record header)', size
    return f'is corrupt: the header of record {record} at byte {position} fails its checksum', size
  end = position + _HEADER_BYTES + length + _FOOTER_BYTES
  if end > size:
    return (f'is truncated: record {record} at byte {position} needs {length + _HEADER_BYTES + _FOOTER_BYTES} bytes '
            f'but the file ends at byte {size}'), size
  return None, end


def scan_tfrecord_file(path: str) -> Tuple[int, Optional[str]]:
  """Walks the record headers of one TFRecord file without reading record data.

  Args:
    path: a local file, or a remote one (`gs://...`), of which only the first record header is checked.

  Returns:
    (records found, problem): the problem is None for a sound file, else a phrase like 'is truncated: record 3
    at byte 49691 needs 120016 bytes but the file ends at byte 60000'. A remote file reports 1 record when it has
    any, as only the first is looked at.
  """
  remote = '://' in path
  try:
    size = tf.io.gfile.stat(path).length if remote else os.path.getsize(path)
    opener = tf.io.gfile.GFile(path, 'rb') if remote else open(path, 'rb')  # pylint: disable=consider-using-with
    with opener as f:
      position = record = 0
      while position < size:
        if position:
          f.seek(position)
        problem, position = _check_header(f.read(_HEADER_BYTES), position, size, record)
        if problem:
          return record, problem
        record += 1
        if remote:
          break
      return record, None
  except (OSError, tf.errors.OpError) as e:
    return 0, f'cannot be read ({getattr(e, "message", None) or e})'


def check_files(files: Sequence[str], key: str) -> int:
  """Checks that every one of `files` is a complete TFRecord file and that together they hold a record.

  Args:
    files: the matched files.
    key: the config key they came from, used in messages.

  Returns:
    The number of records found (a lower bound for remote files, whose first record only is counted).

  Raises:
    UserInputError: naming the bad files (a stray text file, a truncated or corrupt shard), or saying that the
      files hold no records.
  """
  if any('://' in f for f in files):
    with concurrent.futures.ThreadPoolExecutor(_REMOTE_THREADS) as pool:
      results = list(pool.map(scan_tfrecord_file, files))
  else:
    results = [scan_tfrecord_file(f) for f in files]
  bad = [f'{path} {problem}' for path, (_, problem) in zip(files, results) if problem]
  if bad:
    shown = '; '.join(bad[:3]) + (f'; and {len(bad) - 3} more' if len(bad) > 3 else '')
    raise errors.UserInputError(
        f'{key}: {len(bad)} of the {len(files)} matched files cannot be used: {shown}. Remove them from the glob, '
        'or re-run `python -m data_tools.convert` (it redoes incomplete shards) or the copy that made them.')
  total = sum(count for count, _ in results)
  if not total:
    raise errors.UserInputError(
        f'{key}: the {len(files)} file(s) matched hold no records (first: {files[0]}). '
        + _DATA_TOOLS_HINT.format(key=key))
  return total


def input_paths(params) -> List[Tuple[str, str]]:
  """(config key, input_path) of the experiment's training and validation data, for messages."""
  result = []
  for name in ('train_data', 'validation_data'):
    data = getattr(params.task, name, None)
    path = getattr(data, 'input_path', None) if data is not None else None
    if path:
      text = path if isinstance(path, str) else ','.join(str(p) for p in path)
      if text not in (known for _, known in result):
        result.append((f'task.{name}.input_path', text))
  return result


def read_error_message(paths: Sequence[Tuple[str, str]], error: Exception) -> str:
  """The one-line message for a TFRecord read error during a run (the error itself names no file).

  Args:
    paths: (config key, input_path) of every data config the run reads (see `input_paths`).
    error: the `tf.errors.DataLossError` (or other read error) raised while iterating.

  Returns:
    A message naming the globs and how to find the bad file.
  """
  detail = (getattr(error, 'message', None) or str(error)).strip().splitlines()
  detail = detail[0] if detail else type(error).__name__
  globs = ', '.join(f'{key}={path}' for key, path in paths if path) or 'the input files'
  first = next((path for _, path in paths if path), '<glob>')
  return (f'a TFRecord input could not be read during the run ({detail}) in {globs}. Find the damaged file with '
          f'`python -m data_tools.verify --input \'{first}\'`, then re-convert it or remove it from the glob.')


def check_data_config(params, key: str) -> List[str]:
  """Checks a data config's `file_type` and `input_path` before a pipeline is built on them.

  Args:
    params: a DataConfig with `name`, `file_type` and `input_path`.
    key: the config key of `params`, e.g. 'task.train_data', used in messages.

  Returns:
    The matching files.

  Raises:
    UserInputError: an unsupported file type, no matching file, a matched file that is not a complete TFRecord
      file, or no record in the matching files.
  """
  if params.file_type != 'tfrecord':
    raise errors.UserInputError(
        f'{key}.file_type={params.file_type!r}: only tfrecord is supported (what data_tools.convert writes).')
  files = resolve_input_files(params.input_path, key=f'{key}.input_path')
  check_files(files, key=f'{key}.input_path')
  logging.info('%s: dataset %s, %d file(s) matching %s.', key, params.name or '(unnamed)', len(files),
               params.input_path)
  return files
