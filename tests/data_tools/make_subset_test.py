"""Tests for data_tools.make_subset: class-balanced, seed-deterministic label-fraction subsets."""

import collections
import glob
import os

import numpy as np
import tensorflow as tf

from data_tools import make_subset
from data_tools import sequence_example
from official_cvrl.dataloaders import feature_keys


def _write_training_set(directory, class_sizes):
  """Writes one 1-frame video per id, classes of the given sizes, over two shards in an arbitrary order."""
  frame = sequence_example.encode_jpeg(np.zeros((4, 4, 3), np.uint8))
  records = []
  for label, size in enumerate(class_sizes):
    for i in range(size):
      records.append(sequence_example.make_sequence_example(
          [frame], video_id=f'c{label}/v{i:03d}', height=4, width=4, fps=25.0, source_fps=25.0,
          label_indices=[label]).SerializeToString())
  rng = np.random.RandomState(0)
  rng.shuffle(records)
  for shard in range(2):
    with tf.io.TFRecordWriter(os.path.join(directory, f'train-{shard:05d}-of-00002.tfrecord')) as writer:
      for record in records[shard::2]:
        writer.write(record)
  return os.path.join(directory, 'train-*.tfrecord')


def _ids_and_labels(pattern):
  result = {}
  for path in glob.glob(pattern):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      context = tf.train.SequenceExample.FromString(raw).context.feature
      result[context[feature_keys.VIDEO_ID_KEY].bytes_list.value[0].decode()] = (
          context[feature_keys.LABEL_INDEX_KEY].int64_list.value[0])
  return result


class MakeSubsetTest(tf.test.TestCase):

  def test_per_class_count(self):
    # round(fraction * n) half up, at least one.
    self.assertEqual([make_subset.per_class_count(n, 0.1) for n in [1, 4, 5, 14, 15, 100]], [1, 1, 1, 1, 2, 10])
    self.assertEqual(make_subset.per_class_count(250, 0.01), 3)

  def test_balanced_deterministic_subset(self):
    full = _write_training_set(self.get_temp_dir(), class_sizes=[40, 25, 3])
    out = os.path.join(self.get_temp_dir(), 'ten_percent')
    result = make_subset.make_subset(full, out, fraction=0.1, seed=7)
    written = _ids_and_labels(os.path.join(out, 'train-*.tfrecord'))
    self.assertEqual(collections.Counter(written.values()), {0: 4, 1: 3, 2: 1})  # Every class represented.
    self.assertEqual(result.per_class, {0: (40, 4), 1: (25, 3), 2: (3, 1)})
    with open(result.id_list_path) as f:
      self.assertEqual(f.read().split(), sorted(written))
    # Reference selection: per class, the ids with the smallest SHA-256 of "seed:id".
    from data_tools import shards  # pylint: disable=g-import-not-at-top
    expected = []
    for label, size, keep in [(0, 40, 4), (1, 25, 3), (2, 3, 1)]:
      ids = [f'c{label}/v{i:03d}' for i in range(size)]
      expected += sorted(ids, key=lambda i: shards.stable_hash(f'7:{i}'))[:keep]
    self.assertEqual(sorted(written), sorted(expected))
    # Same seed: byte-identical shards; another seed: another subset of the same sizes.
    again = make_subset.make_subset(full, os.path.join(self.get_temp_dir(), 'again'), fraction=0.1, seed=7)
    for a, b in zip(result.shard_paths, again.shard_paths):
      with open(a, 'rb') as fa, open(b, 'rb') as fb:
        self.assertEqual(fa.read(), fb.read())
    other = make_subset.make_subset(full, os.path.join(self.get_temp_dir(), 'other'), fraction=0.1, seed=8)
    self.assertNotEqual(other.selected, result.selected)
    self.assertLen(other.selected, 8)

  def test_rejects_unlabelled_sets_and_bad_fractions(self):
    frame = sequence_example.encode_jpeg(np.zeros((4, 4, 3), np.uint8))
    path = os.path.join(self.get_temp_dir(), 'unlabeled.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
      writer.write(sequence_example.make_sequence_example(
          [frame], video_id='x', height=4, width=4, fps=25.0, source_fps=25.0).SerializeToString())
    with self.assertRaisesRegex(ValueError, 'no class index'):
      make_subset.make_subset(path, os.path.join(self.get_temp_dir(), 'out'), fraction=0.1)
    with self.assertRaisesRegex(ValueError, 'fraction'):
      make_subset.select_balanced({'a': 0}, fraction=0.0, seed=0)


if __name__ == '__main__':
  tf.test.main()
