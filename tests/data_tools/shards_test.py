"""Tests for data_tools.shards: deterministic assignment and atomic shard files."""

import os

import tensorflow as tf

from data_tools import shards


class ShardsTest(tf.test.TestCase):

  def test_assignment_is_balanced_and_independent_of_listing_order(self):
    ids = [f'class{i % 3}/video{i}.mp4' for i in range(10)]
    plan = shards.assign_shards(ids, 3)
    self.assertEqual(sorted(len(s) for s in plan), [3, 3, 4])
    self.assertEqual(sorted(p for s in plan for p in s), list(range(10)))
    by_id = [[ids[p] for p in s] for s in plan]
    reversed_ids = ids[::-1]
    by_id_reversed = [[reversed_ids[p] for p in s] for s in shards.assign_shards(reversed_ids, 3)]
    self.assertEqual(by_id, by_id_reversed)
    # Independent reference: order by SHA-256 of the id, then cut into contiguous runs.
    order = sorted(ids, key=lambda i: (shards.stable_hash(i), i))
    self.assertEqual([i for s in by_id for i in s], order)

  def test_assignment_rejects_duplicates(self):
    with self.assertRaisesRegex(ValueError, 'unique'):
      shards.assign_shards(['a', 'a'], 1)

  def test_stable_hash_value(self):
    # First 8 bytes of SHA-256('abc') = ba7816bf8f01cfea.
    self.assertEqual(shards.stable_hash('abc'), 0xba7816bf8f01cfea)

  def test_auto_num_shards(self):
    self.assertEqual([shards.auto_num_shards(n) for n in [1, 12, 100, 1600, 1601]], [1, 12, 16, 16, 17])

  def test_atomic_writer(self):
    directory = self.get_temp_dir()
    state = shards.state_dir(directory)
    path = os.path.join(directory, shards.shard_name('train', 0, 2))
    self.assertEndsWith(path, 'train-00000-of-00002.tfrecord')
    with self.assertRaises(RuntimeError):
      with shards.AtomicTFRecordWriter(path, state) as writer:
        writer.write(b'first')
        raise RuntimeError('killed')
    self.assertFalse(os.path.exists(path))
    self.assertEmpty(os.listdir(state))  # The aborted temporary is gone.
    with shards.AtomicTFRecordWriter(path, state) as writer:
      writer.write(b'first')
      self.assertFalse(os.path.exists(path))  # Not visible before completion.
    self.assertEqual(list(tf.data.TFRecordDataset(path).as_numpy_iterator()), [b'first'])
    self.assertEqual(shards.existing_shard_counts(directory, 'train'), {2})
    # A killed process leaves temporaries; the next run removes exactly those of its set.
    for name in ['train-00001-of-00002.tfrecord.tmp-1', 'val-00000-of-00001.tfrecord.tmp-2']:
      open(os.path.join(state, name), 'w').close()
    self.assertEqual(shards.remove_temporaries(state, ['train-']), 1)
    self.assertEqual(os.listdir(state), ['val-00000-of-00001.tfrecord.tmp-2'])


if __name__ == '__main__':
  tf.test.main()
