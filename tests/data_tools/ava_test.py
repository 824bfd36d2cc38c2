"""Tests of the AVA CSV parsing and keyframe conversion on a tiny fake movie written with PyAV."""
import glob
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from data_tools import ava
from data_tools.synthetic import synthetic_detection
from official_cvrl.dataloaders import detection_input
from official_cvrl.evaluation import ava_frame_map
from tests.data_tools import video_fixtures

_LABEL_MAP = '''item {
  name: "stand"
  id: 12
}
item {
  name: "talk to (e.g., self, a person, a group)"
  id: 79
}
'''
# Keyframes at seconds 1 and 2 of movie "m1" (the 15-minute convention is tested with segment_start).
_ANNOTATIONS = '''m1,0001,0.1,0.2,0.5,0.6,12,0
m1,0001,0.1,0.2,0.5,0.6,79,0
m1,0001,0.6,0.1,0.9,0.8,80,1
m1,0002,0.0,0.0,1.0,1.0,79,3
m1,0003,0.2,0.2,0.4,0.4,12,0
'''
_EXCLUDED = 'm1,0003\n'
_PROPOSALS = '''m1,0001,0.1,0.2,0.5,0.6,,0.95
m1,0001,0.6,0.1,0.9,0.8,,0.5
m2,0001,0.1,0.1,0.2,0.2,,0.9
'''


class AvaTest(tf.test.TestCase):

  def _write(self, name, text):
    path = os.path.join(self.get_temp_dir(), name)
    with open(path, 'w') as f:
      f.write(text)
    return path

  def test_label_map_and_excluded(self):
    items = ava_frame_map.read_label_map_pbtxt(self._write('labels.pbtxt', _LABEL_MAP))
    self.assertEqual(items, [(12, 'stand'), (79, 'talk to (e.g., self, a person, a group)')])
    self.assertEqual(ava_frame_map.read_excluded_timestamps(self._write('ex.csv', _EXCLUDED)), {'m1,0003'})
    with self.assertRaisesRegex(ValueError, 'no "item'):
      ava_frame_map.parse_label_map_pbtxt('name: "x"')

  def test_annotations_group_actions_per_person_and_drop_other_classes(self):
    keyframes = ava.read_annotations(self._write('a.csv', _ANNOTATIONS), {12: 0, 79: 1})
    first = keyframes['m1,0001']
    self.assertEqual(first.boxes, [(0.2, 0.1, 0.6, 0.5), (0.1, 0.6, 0.8, 0.9)])  # [ymin, xmin, ymax, xmax].
    self.assertEqual(first.labels, [[0, 1], []])  # Action 80 is not an evaluation class.
    ava.read_proposals(self._write('p.csv', _PROPOSALS), keyframes)
    self.assertEqual(first.proposal_scores, [0.95, 0.5])
    train = ava.select_keyframes(keyframes, {'m1,0003'}, is_training=True)
    self.assertEqual([k.key for k in train], ['m1,0001', 'm1,0002'])
    self.assertEqual(train[0].labels, [[0, 1]])  # The box without an evaluation action is dropped in training.
    val = ava.select_keyframes(keyframes, {'m1,0003'}, is_training=False)
    self.assertEqual([k.key for k in val], ['m1,0001', 'm1,0002', 'm2,0001'])  # m2: proposals only.

  def test_bad_rows_name_the_file_and_line(self):
    path = self._write('bad.csv', 'm1,0001,0.1,0.2,1.5,0.6,12,0\n')
    with self.assertRaisesRegex(ValueError, r'bad.csv:1: box'):
      ava.read_annotations(path, {12: 0})

  def test_conversion_of_a_fake_movie(self):
    movies = os.path.join(self.get_temp_dir(), 'movies')
    # 20 frames at 10 fps (2 s), frame i of grey level gray_level(i); keyframe 1 s is frame 10.
    video_fixtures.write_video(os.path.join(movies, 'm1.mp4'), num_frames=20, fps=10, width=32, height=24)
    output_dir = os.path.join(self.get_temp_dir(), 'records')
    settings = ava.ClipSettings(num_frames=4, temporal_stride=2, fps=10.0, short_side=24)
    result = ava.convert(self._write('a.csv', _ANNOTATIONS), self._write('labels.pbtxt', _LABEL_MAP), movies,
                         output_dir, 'train', excluded=self._write('ex.csv', _EXCLUDED),
                         proposals=self._write('p.csv', _PROPOSALS), settings=settings, num_shards=1,
                         in_process=True)
    self.assertEqual(result.num_failed, 0)
    self.assertTrue(os.path.exists(os.path.join(output_dir, 'labels.pbtxt')))
    records = list(tf.data.TFRecordDataset(glob.glob(os.path.join(output_dir, 'train-*.tfrecord'))))
    self.assertLen(records, 2)
    decoded = [detection_input.Decoder().decode(r) for r in records]
    first = next(d for d in decoded if int(d['clip/keyframe/timestamp']) == 1)
    # [0.6, 1.4) s at 10 fps: frames 6..13, the keyframe (frame 10) at index 4.
    self.assertLen(first['image/encoded'], 8)
    self.assertEqual(int(first['clip/keyframe/frame_index']), 4)
    keyframe = tf.io.decode_jpeg(first['image/encoded'][4]).numpy()
    self.assertAllClose(keyframe.mean(), video_fixtures.gray_level(10), atol=3)
    self.assertAllClose(first['clip/keyframe/bbox/xmin'], [0.1])
    self.assertAllEqual(first['clip/keyframe/label/class_index'], [0, 1])
    self.assertAllEqual(first['clip/keyframe/label/box_index'], [0, 0])
    self.assertAllClose(first['clip/keyframe/proposal/score'], [0.95, 0.5])
    # The model's parser reads the record back: 4 frames at stride 2 centred on the keyframe.
    parser = detection_input.Parser(num_frames=4, temporal_stride=2, image_size=(24, 32), num_classes=2,
                                    max_num_boxes=2)
    features, labels = parser.parse_fn(False)(first)
    self.assertEqual(labels['keyframe_key'].numpy().decode(), 'm1,0001')
    self.assertAllEqual(features['box_mask'], [1.0, 0.0])  # Only the 0.95 proposal is >= 0.8.
    levels = [float(np.mean(f)) for f in features['image'].numpy()]
    self.assertAllClose(levels, [video_fixtures.gray_level(i) for i in (6, 8, 10, 12)], atol=3)

  def test_command_line_with_beam_worker_processes(self):
    # Worker processes unpickle the keyframe items: they must refer to data_tools.ava, not the CLI's __main__.
    raw = os.path.join(self.get_temp_dir(), 'cli_raw')
    synthetic_detection.write_ava_movies(raw, num_train_movies=1, num_val_movies=0, seconds=2, fps=8, size=32)
    output_dir = os.path.join(self.get_temp_dir(), 'cli_records')
    command = [sys.executable, '-m', 'data_tools.ava', '--split=train',
               f'--annotations={os.path.join(raw, "ava_train.csv")}',
               f'--label_map={os.path.join(raw, "label_map.pbtxt")}', f'--movies_dir={os.path.join(raw, "movies")}',
               f'--output_dir={output_dir}', '--fps=8', '--num_frames=4', '--temporal_stride=2', '--short_side=32',
               '--num_shards=2', '--direct_running_mode=multi_processing', '--direct_num_workers=2']
    process = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300,
                             cwd=os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
    self.assertEqual(process.returncode, 0, process.stdout[-2000:] + process.stderr[-3000:])
    self.assertIn('2 of 2 inputs converted; 0 failed', process.stdout)
    records = list(tf.data.TFRecordDataset(sorted(glob.glob(os.path.join(output_dir, 'train-*.tfrecord')))))
    self.assertLen(records, 2)

  def test_missing_movie_is_reported(self):
    output_dir = os.path.join(self.get_temp_dir(), 'missing')
    result = ava.convert(self._write('a.csv', 'm9,0001,0.1,0.2,0.5,0.6,12,0\n'),
                         self._write('labels.pbtxt', _LABEL_MAP), self.get_temp_dir(), output_dir, 'train',
                         settings=ava.ClipSettings(num_frames=2, temporal_stride=1, fps=10.0), num_shards=1,
                         in_process=True)
    self.assertEqual(result.num_failed, 1)
    self.assertEqual(result.entries[0].reason, 'missing file')


if __name__ == '__main__':
  tf.test.main()
