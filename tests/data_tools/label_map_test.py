"""Tests for data_tools.label_map: one map per dataset, written once, refused labels reported."""

import os
import subprocess
import sys
from unittest import mock

import tensorflow as tf

from data_tools import label_map
from data_tools import report
from official_cvrl.utils import errors

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# What TensorFlow's GCS file system raises when the bucket's host cannot be reached.
_UNREACHABLE = tf.errors.FailedPreconditionError(
    None, None, "Error executing an HTTP request: libcurl code 6 meaning 'Could not resolve hostname'")


class LabelMapTest(tf.test.TestCase):

  def test_created_sorted_and_reused(self):
    path = os.path.join(self.get_temp_dir(), 'maps', 'label_map.txt')
    created = label_map.load_or_create(path, ['walk', 'Run', 'jump', 'walk'])
    self.assertEqual(created.names, ['Run', 'jump', 'walk'])  # Code-point order: upper case first.
    with open(path) as f:
      self.assertEqual(f.read(), 'Run\njump\nwalk\n')
    # A later split names its classes in another order and lacks one: the existing map wins, unchanged.
    reused = label_map.load_or_create(path, ['walk', 'jump'])
    self.assertEqual(reused.names, created.names)
    self.assertEqual([reused.index(n) for n in ['Run', 'jump', 'walk']], [0, 1, 2])

  def test_official_order_kept(self):
    path = os.path.join(self.get_temp_dir(), 'label_map.txt')
    created = label_map.load_or_create(path, ['JumpingJack', 'JumpRope'], sort=False)
    self.assertEqual(created.index('JumpingJack'), 0)

  def test_unknown_label_is_refused(self):
    path = os.path.join(self.get_temp_dir(), 'label_map.txt')
    labels = label_map.load_or_create(path, ['a', 'b'])
    with self.assertRaises(label_map.UnknownLabelError) as caught:
      labels.index('c')
    self.assertEqual(caught.exception.reason, report.UNKNOWN_LABEL)
    self.assertIn(path, str(caught.exception))

  def test_malformed_maps_fail_clearly(self):
    directory = self.get_temp_dir()
    for name, text, message in [('empty.txt', '', 'empty'), ('blank.txt', 'a\n\nb\n', 'blank lines'),
                                ('dup.txt', 'a\na\n', 'twice')]:
      path = os.path.join(directory, name)
      with open(path, 'w') as f:
        f.write(text)
      with self.assertRaisesRegex(ValueError, message):
        label_map.read(path)
    with self.assertRaisesRegex(ValueError, 'no classes'):
      label_map.load_or_create(os.path.join(directory, 'new.txt'), None)

  def test_unreachable_bucket_is_one_clear_error(self):
    path = 'gs://YOUR_BUCKET/kinetics400/label_map.txt'
    for call in (lambda: label_map.read(path), lambda: label_map.load_or_create(path, ['a']),
                 lambda: label_map.exists(path)):
      with mock.patch.object(tf.io.gfile, 'exists', side_effect=_UNREACHABLE):
        with self.assertRaises(errors.UserInputError) as raised:
          call()
      message = str(raised.exception)
      self.assertStartsWith(message, f'Label map {path}: cannot read it (Error executing an HTTP request')
      self.assertIn('credentials', message)
      self.assertIn('--label_map', message)
    with mock.patch.object(tf.io.gfile, 'makedirs', side_effect=tf.errors.PermissionDeniedError(None, None, 'no')):
      with self.assertRaisesRegex(errors.UserInputError, r'^Label map /ro/map.txt: cannot write it \(no\); check '):
        label_map.write('/ro/map.txt', label_map.LabelMap(['a']))

  def test_convert_prints_one_line_for_an_unreachable_label_map(self):
    # A bucket name that cannot exist: the GCS file system fails (no network, or no such bucket) either way.
    env = dict(os.environ, PYTHONPATH=_REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='2', GCS_REQUEST_CONNECTION_TIMEOUT_SECS='5')
    videos = os.path.join(self.get_temp_dir(), 'videos', 'walk')
    os.makedirs(videos)
    open(os.path.join(videos, 'a.mp4'), 'w').close()
    process = subprocess.run(
        [sys.executable, '-m', 'data_tools.convert', '--source=folder', f'--input_dir={os.path.dirname(videos)}',
         '--split=train', f'--output_dir={self.get_temp_dir()}/out', '--label_map=gs://-no-such-bucket-/map.txt'],
        cwd=_REPO_ROOT, env=env, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(process.returncode, 2, process.stderr)
    self.assertNotIn('Traceback', process.stderr)
    self.assertRegex(process.stderr, r'\[train\] ERROR: Label map gs://-no-such-bucket-/map.txt: cannot read it')


if __name__ == '__main__':
  tf.test.main()
