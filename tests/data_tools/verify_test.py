"""Tests for data_tools.verify: statistics of a good set, clear failures on sets our tasks cannot read."""

import os

import numpy as np
import tensorflow as tf

from data_tools import sequence_example
from data_tools import verify


def _video(video_id, label, num_frames=3, height=8, width=10):
  frames = [sequence_example.encode_jpeg(np.full((height, width, 3), 40 * t, np.uint8)) for t in range(num_frames)]
  return sequence_example.make_sequence_example(
      frames, video_id=video_id, height=height, width=width, fps=25.0, source_fps=30.0,
      label_indices=[['a', 'b'].index(label)], label_names=[label]).SerializeToString()


def _write(path, records):
  with tf.io.TFRecordWriter(path) as writer:
    for record in records:
      writer.write(record)
  return path


class VerifyTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = self.get_temp_dir()
    self.label_map = os.path.join(self.directory, 'label_map.txt')
    with open(self.label_map, 'w') as f:
      f.write('a\nb\n')

  def test_statistics_of_a_good_set(self):
    _write(os.path.join(self.directory, 'train-00000-of-00002.tfrecord'),
           [_video('v1', 'a', 3), _video('v2', 'b', 5)])
    _write(os.path.join(self.directory, 'train-00001-of-00002.tfrecord'), [_video('v3', 'a', 4)])
    stats = verify.verify(os.path.join(self.directory, 'train-*.tfrecord'), self.label_map, num_decode=2)
    self.assertEqual(stats.num_videos, 3)
    self.assertEqual(stats.videos_per_class, {'a': 2, 'b': 1})
    self.assertEqual(sorted(stats.frames_per_video), [3, 4, 5])
    self.assertEqual(stats.resolutions, {'8x10': 3})
    self.assertEqual(stats.fps, {'25': 3})
    self.assertEqual(stats.missing_keys, {})
    self.assertEqual(stats.decoded_videos, 2)
    self.assertIn('videos per class: min 1, max 2', verify.format_stats(stats))
    self.assertEqual(verify.main(['--input', os.path.join(self.directory, 'train-*.tfrecord')]), 0)

  def test_rejects_a_file_that_is_not_tfrecord(self):
    path = os.path.join(self.directory, 'clip.mp4')
    with open(path, 'wb') as f:
      f.write(b'\x00\x00\x00\x18ftypmp42' + bytes(64))
    with self.assertRaisesRegex(verify.VerifyError, f'{path}: not a \\(complete\\) TFRecord file'):
      verify.verify(path)
    self.assertEqual(verify.main(['--input', path]), 1)

  def test_rejects_a_shard_cut_inside_a_record_header(self):
    # TensorFlow's reader takes the 5 stray bytes for the end of the file; training's input check does not.
    whole = _write(os.path.join(self.directory, 'whole.tfrecord'), [_video('v1', 'a'), _video('v2', 'b')])
    with open(whole, 'rb') as f:
      data = f.read()
    path = os.path.join(self.directory, 'train-00000-of-00001.tfrecord')
    first_record = 16 + int.from_bytes(data[:8], 'little')
    with open(path, 'wb') as f:
      f.write(data[:first_record + 5])
    self.assertLen(list(tf.data.TFRecordDataset(path)), 1)
    with self.assertRaisesRegex(verify.VerifyError, f'^{path} is truncated: the file ends at byte '
                                f'{first_record + 5}, inside the header of record 1 at byte {first_record}, after 1 '
                                'complete records'):
      verify.verify(path)

  def test_rejects_records_our_tasks_cannot_read(self):
    image_example = tf.train.Example(features=tf.train.Features(feature={
        'image/encoded': tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'jpeg']))})).SerializeToString()
    cases = [
        ('example.tfrecord', [image_example], 'no sequence feature "image/encoded".*tf.train.Example'),
        ('garbage.tfrecord', [b'\xff\xff\xff'], 'not a tf.train.SequenceExample'),
        ('outside.tfrecord', [_video('v', 'b')], 'class index 1 is outside the label map'),
    ]
    for name, records, message in cases:
      with self.subTest(name):
        path = _write(os.path.join(self.directory, name), records)
        labels = None
        if name == 'outside.tfrecord':
          labels = os.path.join(self.directory, 'one_class.txt')
          with open(labels, 'w') as f:
            f.write('a\n')
        with self.assertRaisesRegex(verify.VerifyError, f'{path}, record 0: {message}'):
          verify.verify(path, labels)

  def test_rejects_frames_that_disagree_with_stored_size(self):
    example = tf.train.SequenceExample.FromString(_video('v', 'a'))
    example.context.feature['image/height'].int64_list.value[0] = 99
    path = _write(os.path.join(self.directory, 'bad_size.tfrecord'), [example.SerializeToString()])
    with self.assertRaisesRegex(verify.VerifyError, 'frames are \\(8, 10\\) but'):
      verify.verify(path)

  def test_empty_set_and_no_match(self):
    path = _write(os.path.join(self.directory, 'empty.tfrecord'), [])
    with self.assertRaisesRegex(verify.VerifyError, 'holds no videos'):
      verify.verify(path)
    with self.assertRaisesRegex(verify.VerifyError, 'No files match'):
      verify.verify(os.path.join(self.directory, 'absent-*.tfrecord'))

  def test_rejects_a_shard_set_with_missing_shards(self):
    for index in (0, 2):
      _write(os.path.join(self.directory, f'train-{index:05d}-of-00004.tfrecord'), [_video(f'v{index}', 'a')])
    # Shard 00001 exists but the glob leaves it out on purpose: not missing. 00003 is nowhere.
    _write(os.path.join(self.directory, 'train-00001-of-00004.tfrecord'), [_video('v1', 'b')])
    pattern = os.path.join(self.directory, 'train-0000[023]-of-*.tfrecord')
    expected = (f'{os.path.join(self.directory, "train")}-*-of-00004.tfrecord: 1 of 4 shards are missing (00003). '
                'Re-run the same data_tools.convert command: it converts the missing shards only.')
    with self.assertRaises(verify.VerifyError) as raised:
      verify.verify(pattern)
    self.assertEqual(str(raised.exception), expected)
    _write(os.path.join(self.directory, 'train-00003-of-00004.tfrecord'), [_video('v3', 'b')])
    self.assertEqual(verify.verify(pattern).num_videos, 3)


if __name__ == '__main__':
  tf.test.main()
