"""Tests for data_tools.label_map: one map per dataset, written once, refused labels reported."""

import os

import tensorflow as tf

from data_tools import label_map
from data_tools import report


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


if __name__ == '__main__':
  tf.test.main()
