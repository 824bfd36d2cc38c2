"""Tests of the input-file checks: every matched shard is checked cheaply, and a bad one is named.

TensorFlow's own writer makes the shards and its own reader is the reference for whether a file is sound; the driver
test runs `official_cvrl.train` as a user does, on a shard damaged where the cheap check cannot see it.
"""
import os
import shutil
import time

from absl.testing import parameterized
import tensorflow as tf

from official_cvrl.configs import cvrl as _cvrl  # pylint: disable=unused-import  (registers the experiments)
from official_cvrl.utils import errors
from official_cvrl.utils import input_files
from tests import fake_records
from tests import train_test


def _write_shard(path: str, sizes) -> str:
  with tf.io.TFRecordWriter(path) as writer:
    for i, size in enumerate(sizes):
      writer.write(bytes((i + k) % 256 for k in range(size)))
  return path


def _tensorflow_reads_whole(path: str) -> bool:
  """The reference: TensorFlow's reader gets through every record (and its data checksum) without an error."""
  try:
    for _ in tf.data.TFRecordDataset(path):
      pass
  except tf.errors.DataLossError:
    return False
  return True


def _cut(source: str, destination: str, size: int) -> str:
  with open(source, 'rb') as f:
    data = f.read()
  with open(destination, 'wb') as f:
    f.write(data[:size])
  return destination


class Crc32cTest(tf.test.TestCase):

  def test_known_check_value(self):
    # The CRC-32C check value of the ASCII digits 1-9 (RFC 3720, iSCSI).
    self.assertEqual(input_files.crc32c(b'123456789'), 0xE3069283)

  def test_matches_headers_tensorflow_writes(self):
    path = _write_shard(os.path.join(self.get_temp_dir(), 'a.tfrecord'), [0, 1, 300])
    with open(path, 'rb') as f:
      data = f.read()
    position = 0
    for size in (0, 1, 300):
      header = data[position:position + 12]
      self.assertEqual(int.from_bytes(header[:8], 'little'), size)
      self.assertEqual(int.from_bytes(header[8:], 'little'), input_files.masked_crc32c(header[:8]))
      position += 16 + size
    self.assertEqual(position, len(data))


class ScanTest(tf.test.TestCase, parameterized.TestCase):

  def test_sound_files(self):
    directory = self.get_temp_dir()
    self.assertEqual(input_files.scan_tfrecord_file(_write_shard(os.path.join(directory, 'a'), [5, 0, 700])),
                     (3, None))
    self.assertEqual(input_files.scan_tfrecord_file(_write_shard(os.path.join(directory, 'empty'), [])), (0, None))

  def test_every_cut_agrees_with_tensorflow(self):
    # Records of 100, 40 and 250 bytes: cut inside headers, inside data, inside checksums and at record ends.
    directory = self.get_temp_dir()
    whole = _write_shard(os.path.join(directory, 'whole.tfrecord'), [100, 40, 250])
    size = os.path.getsize(whole)
    boundaries = {0, 116, 172, size}
    cuts = set(range(0, size + 1, 7)) | {b + d for b in boundaries for d in (-1, 0, 1, 12)}
    for cut in sorted(c for c in cuts if 0 <= c <= size):
      path = _cut(whole, os.path.join(directory, f'cut{cut}.tfrecord'), cut)
      records, problem = input_files.scan_tfrecord_file(path)
      with self.subTest(cut=cut):
        self.assertEqual(problem is None, cut in boundaries)
        if not _tensorflow_reads_whole(path):
          self.assertIsNotNone(problem)
        elif problem:
          # TensorFlow's reader takes a file that ends inside a record header for a shorter file, silently.
          self.assertRegex(problem, r'inside the header of record|less than one record header')
        if problem:
          self.assertStartsWith(problem, 'is truncated' if cut >= 12 else 'is not a TFRecord')
          self.assertIn(str(cut), problem)
        self.assertEqual(records, sum(cut >= end for end in (116, 172, size)))

  def test_text_file_and_corrupt_header(self):
    directory = self.get_temp_dir()
    text = os.path.join(directory, 'notes.txt')
    with open(text, 'w') as f:
      f.write('train-00000-of-00004.tfrecord\nthese are my notes\n')
    self.assertEqual(input_files.scan_tfrecord_file(text),
                     (0, 'is not a TFRecord file (its first bytes are not a record header)'))
    path = _write_shard(os.path.join(directory, 'a.tfrecord'), [10, 10, 10])
    with open(path, 'r+b') as f:
      f.seek(26 * 2 + 3)  # Inside the length of record 2.
      f.write(b'\x07')
    records, problem = input_files.scan_tfrecord_file(path)
    self.assertEqual(records, 2)
    self.assertEqual(problem, 'is corrupt: the header of record 2 at byte 52 fails its checksum')
    self.assertFalse(_tensorflow_reads_whole(path))


class CheckFilesTest(tf.test.TestCase, parameterized.TestCase):

  def _good_shards(self, directory, count=4):
    os.makedirs(directory, exist_ok=True)
    return [fake_records.write_records(os.path.join(directory, f'train-{i:05d}-of-00005.tfrecord'), 2, seed=i)
            for i in range(count)]

  @parameterized.named_parameters(('truncated_shard', 'truncated'), ('stray_text_file', 'text'))
  def test_bad_file_among_good_shards_is_named(self, kind):
    directory = os.path.join(self.get_temp_dir(), kind)
    good = self._good_shards(directory)
    bad = os.path.join(directory, 'train-00004-of-00005.tfrecord')
    if kind == 'truncated':
      _cut(good[0], bad, os.path.getsize(good[0]) - 1000)
    else:
      with open(bad, 'w') as f:
        f.write('download log\n')
    files = input_files.resolve_input_files(os.path.join(directory, 'train-*'), 'task.train_data.input_path')
    self.assertLen(files, 5)
    with self.assertRaises(errors.UserInputError) as caught:
      input_files.check_files(files, 'task.train_data.input_path')
    message = str(caught.exception)
    self.assertStartsWith(message, 'task.train_data.input_path: 1 of the 5 matched files cannot be used: '
                          f'{bad} is ')
    self.assertIn('truncated: record 1' if kind == 'truncated' else 'not a TFRecord file', message)
    self.assertNotIn('\n', message)
    self.assertEqual(input_files.check_files(good, 'key'), 8)

  def test_no_records_at_all(self):
    directory = self.get_temp_dir()
    empty = [_write_shard(os.path.join(directory, f'e{i}'), []) for i in range(3)]
    with self.assertRaisesRegex(errors.UserInputError, r'^key: the 3 file\(s\) matched hold no records'):
      input_files.check_files(empty, 'key')

  def test_many_bad_files_are_summarised(self):
    directory = self.get_temp_dir()
    texts = []
    for i in range(5):
      texts.append(os.path.join(directory, f'{i}.txt'))
      with open(texts[-1], 'w') as f:
        f.write('not a record file at all')
    with self.assertRaisesRegex(errors.UserInputError, r'5 of the 5 matched files .*; and 2 more\. Remove them'):
      input_files.check_files(texts, 'key')

  def test_thousands_of_shards_are_checked_quickly(self):
    # 2000 shards of 50 records each: only the 12-byte headers are read, so this takes a fraction of a second.
    directory = self.get_temp_dir()
    template = _write_shard(os.path.join(directory, 'template'), [2000] * 50)
    files = []
    for i in range(2000):
      files.append(os.path.join(directory, f'train-{i:05d}-of-02000.tfrecord'))
      shutil.copyfile(template, files[-1])
    started = time.monotonic()
    self.assertEqual(input_files.check_files(files, 'key'), 100000)
    self.assertLess(time.monotonic() - started, 20.0)


class DriverReadErrorTest(tf.test.TestCase):

  def test_damaged_record_during_training_is_one_line(self):
    # A flipped byte inside a record's data passes the header check; TensorFlow's reader finds it mid-run.
    path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train-00000.tfrecord'), 6)
    with open(path, 'r+b') as f:
      f.seek(12 + 200)  # Inside the data of record 0.
      byte = f.read(1)
      f.seek(-1, 1)
      f.write(bytes([byte[0] ^ 0xFF]))
    self.assertEqual(input_files.scan_tfrecord_file(path), (6, None))
    pattern = os.path.join(self.get_temp_dir(), 'train-*.tfrecord')
    # pylint: disable=protected-access  (the driver tests' command helpers)
    result = train_test._run(train_test._command(os.path.join(self.get_temp_dir(), 'model'),
                                                 train_test._tiny_overrides(pattern, 2)))
    # pylint: enable=protected-access
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    errors_printed = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    self.assertLen(errors_printed, 1)
    self.assertIn('a TFRecord input could not be read during the run', errors_printed[0])
    self.assertIn(f'task.train_data.input_path={pattern}', errors_printed[0])
    self.assertIn(f"python -m data_tools.verify --input '{pattern}'", errors_printed[0])
    self.assertNotIn('Traceback', result.stderr)


if __name__ == '__main__':
  tf.test.main()
