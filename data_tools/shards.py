"""Deterministic shard assignment and atomic TFRecord shard writing.

Two properties make conversions reproducible and restartable:
* Assignment depends only on the item ids: items are ordered by a hash of their id (which also mixes classes, so
  a shard is not one class) and cut into `num_shards` contiguous runs of near-equal size. Worker count, runner and
  listing order therefore never change which item lands in which shard, or its position.
* A shard appears under its final name only when complete: records go to a temporary file in a state folder next
  to the output, which is renamed into place at the end. A killed run leaves only temporaries, which the next run
  deletes before it starts.

`<output_dir>/<prefix>-00003-of-00016.tfrecord` is the naming used throughout (glob `<prefix>-*-of-*.tfrecord`).
"""

import hashlib
import os
import re
import uuid
from typing import List, Sequence, Set

import tensorflow as tf

SHARD_SUFFIX = '.tfrecord'
STATE_DIR_NAME = '.convert_state'  # Temporaries, per-shard reports and plans; hidden so globs skip it.
TEMPORARY_MARK = '.tmp-'


def shard_name(prefix: str, index: int, num_shards: int) -> str:
  return f'{prefix}-{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}'


def shard_glob(output_dir: str, prefix: str) -> str:
  """A glob matching every shard of `prefix` in `output_dir` (what training configs point at)."""
  return os.path.join(output_dir, f'{prefix}-*-of-*{SHARD_SUFFIX}')


def state_dir(output_dir: str) -> str:
  return os.path.join(output_dir, STATE_DIR_NAME)


def stable_hash(text: str) -> int:
  """A hash that is the same on every machine and Python run (unlike `hash()`, which is salted per process)."""
  return int.from_bytes(hashlib.sha256(text.encode('utf-8')).digest()[:8], 'big')


def assign_shards(item_ids: Sequence[str], num_shards: int) -> List[List[int]]:
  """Splits items into shards deterministically.

  Args:
    item_ids: unique ids of the items.
    num_shards: number of shards (> 0).

  Returns:
    For each shard, the positions in `item_ids` of its items, in write order. Shard sizes differ by at most one.

  Raises:
    ValueError: on duplicate ids or a non-positive shard count.
  """
  if num_shards <= 0:
    raise ValueError(f'num_shards must be positive, got {num_shards}.')
  if len(set(item_ids)) != len(item_ids):
    raise ValueError('assign_shards needs unique item ids.')
  order = sorted(range(len(item_ids)), key=lambda i: (stable_hash(item_ids[i]), item_ids[i]))
  shards: List[List[int]] = [[] for _ in range(num_shards)]
  for rank, position in enumerate(order):
    shards[rank * num_shards // len(order)].append(position)
  return shards


def auto_num_shards(num_items: int) -> int:
  """About 100 videos (a few hundred MB at 25 fps) per shard, and up to 16 shards so small sets parallelise."""
  return max(1, min(num_items, max(16, -(-num_items // 100))))


def existing_shard_counts(output_dir: str, prefix: str) -> Set[int]:
  """The `-of-N` totals of `prefix` shards already in `output_dir` (more than one value means mixed sets)."""
  pattern = re.compile(re.escape(prefix) + r'-\d{5}-of-(\d{5})' + re.escape(SHARD_SUFFIX) + '$')
  counts = set()
  for path in tf.io.gfile.glob(shard_glob(output_dir, prefix)):
    match = pattern.match(os.path.basename(path))
    if match:
      counts.add(int(match.group(1)))
  return counts


def remove_temporaries(directory: str, name_starts: Sequence[str]) -> int:
  """Deletes temporaries left in `directory` by killed runs; returns how many were deleted.

  Args:
    directory: the folder holding temporaries (a state folder).
    name_starts: beginnings of the final file names whose temporaries to delete, e.g. ['train-', 'train.'];
      temporaries of other sets (possibly being written right now) are left alone.
  """
  paths = set()
  for start in name_starts:
    paths.update(tf.io.gfile.glob(os.path.join(directory, f'{start}*{TEMPORARY_MARK}*')))
  for path in sorted(paths):
    tf.io.gfile.remove(path)
  return len(paths)


def _temporary_path(path: str, temporary_dir: str) -> str:
  # Unique per attempt: two attempts at the same shard (a retried bundle) never write the same temporary.
  return os.path.join(temporary_dir, os.path.basename(path) + TEMPORARY_MARK + uuid.uuid4().hex)


def write_text_atomically(path: str, text: str, temporary_dir: str) -> None:
  """Writes a text file via a temporary in `temporary_dir` (same file system) and a rename."""
  temporary = _temporary_path(path, temporary_dir)
  with tf.io.gfile.GFile(temporary, 'w') as f:
    f.write(text)
  tf.io.gfile.rename(temporary, path, overwrite=True)


class AtomicTFRecordWriter:
  """Writes a TFRecord file that appears under its final name only once complete.

  Use as a context manager: on normal exit the file is renamed into place; on an exception the temporary is
  deleted. A killed process leaves the temporary, which `remove_temporaries` deletes on the next run.
  """

  def __init__(self, path: str, temporary_dir: str):
    self.path = path
    self.num_records = 0
    tf.io.gfile.makedirs(temporary_dir)
    self._temporary = _temporary_path(path, temporary_dir)
    self._writer = tf.io.TFRecordWriter(self._temporary)

  def write(self, record: bytes) -> None:
    self._writer.write(record)
    self.num_records += 1

  def close(self) -> None:
    """Flushes the temporary without publishing it (call `publish` afterwards)."""
    if self._writer is not None:
      self._writer.close()
      self._writer = None

  def publish(self) -> None:
    """Closes the file and renames it to its final name."""
    self.close()
    tf.io.gfile.rename(self._temporary, self.path, overwrite=True)

  def abort(self) -> None:
    self.close()
    if tf.io.gfile.exists(self._temporary):
      tf.io.gfile.remove(self._temporary)

  def __enter__(self) -> 'AtomicTFRecordWriter':
    return self

  def __exit__(self, exc_type, unused_exc, unused_traceback) -> None:
    if exc_type is None:
      self.publish()
    else:
      self.abort()
