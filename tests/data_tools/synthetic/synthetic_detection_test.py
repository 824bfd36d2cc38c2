"""Tests for the synthetic action-detection data (data_tools/synthetic/synthetic_detection.py).

Motion and boxes are measured from the rendered pixels: each actor is rendered alone over the same background
and noise as an empty scene, so the difference of the two is that actor and nothing else. The expected motion
comes from the class name (direction in degrees, or rotation in place).
"""
import os
from unittest import mock

import numpy as np
import tensorflow as tf

from data_tools import ava
from data_tools.synthetic import demo_dataset
from data_tools.synthetic import synthetic_detection
from official_cvrl.dataloaders import detection_input
from official_cvrl.dataloaders import detection_keys
from official_cvrl.dataloaders import feature_keys
from official_cvrl.evaluation import ava_frame_map
from official_cvrl.utils import errors

_FRAMES, _SIZE = 16, 64


def _actor_pixels(actor, seed):
  """float64 [T, S, S] absolute difference made by `actor` alone, and the box render_scene reports for it."""
  alone, boxes = synthetic_detection.render_scene(np.random.default_rng(seed), [actor], _FRAMES, _SIZE)
  empty = synthetic_detection.render_scene(np.random.default_rng(seed), [], _FRAMES, _SIZE)[0]
  return np.abs(alone.astype(np.float64) - empty).max(-1), boxes[0] * _SIZE


def _actors_by_class(num_scenes=80):
  by_class = {}
  rng = np.random.default_rng(7)
  for _ in range(num_scenes):
    for actor in synthetic_detection.sample_scene(rng, _FRAMES, _SIZE):
      by_class.setdefault(actor.class_index, []).append(actor)
  return by_class


class SyntheticDetectionTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.by_class = _actors_by_class()

  def test_every_class_and_bystanders_occur(self):
    self.assertCountEqual(self.by_class, [None] + list(range(len(synthetic_detection.CLASS_NAMES))))

  def test_moving_actors_move_in_their_class_direction(self):
    for class_index, name in enumerate(synthetic_detection.CLASS_NAMES):
      if not name.startswith('move_'):
        continue
      expected = np.deg2rad(float(name[len('move_'):len('move_') + 3]))
      for seed, actor in enumerate(self.by_class[class_index][:3]):
        pixels, _ = _actor_pixels(actor, seed)
        weights = pixels * (pixels > 20)
        ys, xs = np.mgrid[:_SIZE, :_SIZE]
        centroid = np.stack([(weights * xs).sum((1, 2)), (weights * ys).sum((1, 2))], -1) / weights.sum((1, 2))[:, None]
        dx, dy = (centroid[-1] - centroid[0]) / (_FRAMES - 1)
        measured = np.arctan2(-dy, dx)  # Screen y points down; angles are anticlockwise.
        self.assertLess(abs((measured - expected + np.pi) % (2 * np.pi) - np.pi), np.deg2rad(8), name)
        self.assertBetween(np.hypot(dx, dy), 0.9, 1.7)

  def test_rotating_and_still_actors_stay_in_place(self):
    for class_index in (6, 7, None):  # rotate_ccw, rotate_cw, bystander.
      for seed, actor in enumerate(self.by_class[class_index][:3]):
        pixels, _ = _actor_pixels(actor, seed)
        mask = pixels > 20
        first, last = np.argwhere(mask[0]).mean(0), np.argwhere(mask[-1]).mean(0)
        self.assertLess(np.abs(first - last).max(), 1.0)
        covered = mask[0] | mask[-1]
        changed = np.abs(pixels[0] - pixels[-1])[covered].mean()
        if class_index is None:
          self.assertLess(changed, 2.0)  # Same pixels; only rounding and clipping of the noise differ.
        else:
          self.assertGreater(changed, 10.0)  # The texture turns.

  def test_box_is_tight_around_the_keyframe_actor(self):
    for actors in self.by_class.values():
      for seed, actor in enumerate(actors[:2]):
        pixels, (ymin, xmin, ymax, xmax) = _actor_pixels(actor, seed)
        rows, cols = np.nonzero(pixels[_FRAMES // 2] > 40)
        self.assertGreaterEqual(rows.min(), ymin - 1)
        self.assertGreaterEqual(cols.min(), xmin - 1)
        self.assertLessEqual(rows.max() + 1, ymax + 1)
        self.assertLessEqual(cols.max() + 1, xmax + 1)
        x, y = actor.positions[_FRAMES // 2]
        radius = actor.appearance.radius
        self.assertLessEqual(max(ymax - ymin, xmax - xmin), 2 * radius + 2)
        self.assertTrue(ymin - 1 <= y <= ymax + 1 and xmin - 1 <= x <= xmax + 1)

  def test_tracks_stay_in_view_and_actors_apart(self):
    rng = np.random.default_rng(3)
    for _ in range(50):
      actors = synthetic_detection.sample_scene(rng, _FRAMES, _SIZE)
      self.assertBetween(sum(a.class_index is not None for a in actors), 1, 3)
      for i, actor in enumerate(actors):
        radius = actor.appearance.radius
        self.assertAllInRange(actor.positions, radius, _SIZE - radius)
        for other in actors[:i]:
          distance = np.hypot(*(actor.positions[_FRAMES // 2] - other.positions[_FRAMES // 2]))
          self.assertGreaterEqual(distance, 0.8 * (radius + other.appearance.radius) - 1e-9)

  def test_records_parse_with_proposals_for_actors_and_bystanders(self):
    root = self.get_temp_dir()
    paths = synthetic_detection.write_split(root, 'val', 12, 2, seed=0)
    decoder = detection_input.Decoder()
    for record in tf.data.TFRecordDataset(paths):
      decoded = decoder.decode(record)
      boxes = np.stack([decoded[k].numpy() for k in detection_keys.BOX_KEYS], -1)
      proposals = np.stack([decoded[k].numpy() for k in detection_keys.PROPOSAL_KEYS], -1)
      scores = decoded[detection_keys.PROPOSAL_SCORE_KEY].numpy()
      self.assertAllInRange(decoded[detection_keys.LABEL_CLASS_INDEX_KEY], 0, 7)
      self.assertAllEqual(decoded[detection_keys.LABEL_BOX_INDEX_KEY], np.arange(len(boxes)))  # One action each.
      self.assertEqual(decoded[feature_keys.IMAGE_KEY].shape[0], _FRAMES)
      # Every actor has a confident proposal within 2 px; the last proposal is the low-scored background.
      self.assertAllClose(proposals[:len(boxes)], boxes, atol=2.0 / _SIZE + 1e-6)
      self.assertAllGreaterEqual(scores[:-1], 0.85)
      self.assertAllClose(scores[-1], 0.3)
      self.assertBetween(len(proposals) - len(boxes) - 1, 0, 1)  # At most one bystander.

  def test_deterministic_and_splits_differ(self):
    first = synthetic_detection.write_split(os.path.join(self.get_temp_dir(), 'a'), 'train', 4, 1, seed=5)
    second = synthetic_detection.write_split(os.path.join(self.get_temp_dir(), 'b'), 'train', 4, 1, seed=5)
    other = synthetic_detection.write_split(os.path.join(self.get_temp_dir(), 'c'), 'val', 4, 1, seed=5)
    read = lambda p: open(p[0], 'rb').read()
    self.assertEqual(read(first), read(second))
    self.assertNotEqual(read(first), read(other))

  def test_interrupted_write_leaves_no_shard(self):
    root = os.path.join(self.get_temp_dir(), 'interrupted')
    real = synthetic_detection.make_record
    calls = []

    def fail_on_third(*args, **kwargs):
      calls.append(1)
      if len(calls) == 3:
        raise KeyboardInterrupt
      return real(*args, **kwargs)

    with mock.patch.object(synthetic_detection, 'make_record', fail_on_third):
      with self.assertRaises(KeyboardInterrupt):
        synthetic_detection.write_split(root, 'train', 6, 2, seed=0)
    self.assertEqual(os.listdir(root), [])

  def test_movie_scenes_are_centred_on_their_annotated_seconds(self):
    fps, size, seconds = 8, 32, 3
    movie, annotations, proposals = synthetic_detection.render_movie(np.random.default_rng(4), 'm', seconds, fps, size)
    self.assertEqual(len(movie), (seconds + 1) * fps - fps // 2)
    replay = np.random.default_rng(4)  # The same draws, scene by scene.
    for second in range(seconds + 1):
      frames, boxes, labels, bystanders = synthetic_detection.render_keyframe(replay, fps, size)
      synthetic_detection.detector_proposals(replay, boxes, bystanders, size)
      if second == 0:
        self.assertAllEqual(movie[:fps // 2], frames[fps // 2:])  # Only its second half is in the movie.
        continue
      self.assertAllEqual(movie[second * fps - fps // 2:second * fps + fps // 2], frames)
      self.assertAllEqual(movie[second * fps], frames[fps // 2])  # Time `second` shows the keyframe.
      rows = [r.split(',') for r in annotations if r.split(',')[1] == f'{second:04d}']
      self.assertEqual([int(r[6]) - 1 for r in rows], [label[0] for label in labels])
      xyxy = np.array([[float(v) for v in r[2:6]] for r in rows])
      self.assertAllClose(xyxy[:, [1, 0, 3, 2]], boxes, atol=5e-4)
      num_proposals = sum(r.split(',')[1] == f'{second:04d}' for r in proposals)
      self.assertEqual(num_proposals, len(boxes) + len(bystanders) + 1)
    self.assertFalse(any(r.split(',')[1] == '0000' for r in annotations + proposals))

  def test_ava_movies_layout_parses_with_the_ava_readers(self):
    root = os.path.join(self.get_temp_dir(), 'ava_layout')
    synthetic_detection.write_ava_movies(root, num_train_movies=2, num_val_movies=1, seconds=2, fps=8, size=32)
    self.assertCountEqual(os.listdir(os.path.join(root, 'movies')),
                          ['synth_train_000.mp4', 'synth_train_001.mp4', 'synth_val_000.mp4'])
    self.assertCountEqual(os.listdir(root), ['movies', 'ava_train.csv', 'ava_val.csv',
                                             'ava_val_predicted_boxes.csv', 'label_map.pbtxt'])
    items = ava_frame_map.read_label_map_pbtxt(os.path.join(root, 'label_map.pbtxt'))
    keyframes = ava.read_annotations(os.path.join(root, 'ava_train.csv'), {i: i - 1 for i, _ in items})
    self.assertCountEqual(keyframes, ['synth_train_000,0001', 'synth_train_000,0002', 'synth_train_001,0001',
                                      'synth_train_001,0002'])
    ava.read_proposals(os.path.join(root, 'ava_val_predicted_boxes.csv'), keyframes)
    self.assertTrue(all(k.proposals for k in keyframes.values() if k.video_id.startswith('synth_val')))
    # 8 fps x (2 + 1) seconds minus half a scene.
    self.assertLen(demo_dataset.decode_video(os.path.join(root, 'movies', 'synth_val_000.mp4')), 20)

  def test_empty_splits_are_refused_with_the_flag_named(self):
    with self.assertRaisesRegex(errors.UserInputError, '--num_val must be >= 1, got 0'):
      synthetic_detection.check_counts(num_train=4, num_val=0)

  def test_label_map_lists_the_demo_classes(self):
    entries = ava_frame_map.parse_label_map_pbtxt(synthetic_detection.label_map_text())
    self.assertEqual(entries, [(i + 1, name) for i, name in enumerate(synthetic_detection.CLASS_NAMES)])


if __name__ == '__main__':
  tf.test.main()
