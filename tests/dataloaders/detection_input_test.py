"""Tests of the detection input pipeline's training crop (scale jitter) and its box bookkeeping.

References: a float64 NumPy formula for the box transform, and the pixels themselves: a white rectangle drawn at a
box's place must land inside the box the parser returns after cropping and resizing.
"""
from unittest import mock

import numpy as np
import tensorflow as tf

from data_tools import ava
from official_cvrl.dataloaders import detection_input


def _numpy_crop_boxes(boxes, window, height, width):
  top, left, crop_h, crop_w = (float(v) for v in window)
  scale = np.array([crop_h / height, crop_w / width] * 2)
  moved = (np.asarray(boxes, np.float64) - np.array([top / height, left / width] * 2)) / scale
  clipped = np.clip(moved, 0.0, 1.0)
  area = lambda b: np.prod(np.maximum(b[:, 2:] - b[:, :2], 0.0), axis=-1)
  return clipped, area(clipped) / area(moved)


def _record(frames, boxes, labels):
  example = ava.make_detection_example(
      frames=frames, keyframe_index=len(frames) // 2, video_id='v', timestamp=902, fps=30.0, boxes=boxes,
      box_labels=labels, jpeg_quality=100)
  return detection_input.Decoder().decode(tf.constant(example.SerializeToString()))


class DetectionCropTest(tf.test.TestCase):

  def test_crop_boxes_matches_numpy(self):
    rng = np.random.default_rng(0)
    ys, xs = np.sort(rng.uniform(size=(2, 50, 2)), axis=-1)
    boxes = np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], -1).astype(np.float32)
    window = [30, 50, 120, 200]
    clipped, visible = detection_input.crop_boxes(tf.constant(boxes), tf.constant(window), 180, 320)
    expected_boxes, expected_visible = _numpy_crop_boxes(boxes, window, 180, 320)
    self.assertAllClose(clipped, expected_boxes, atol=1e-6)
    self.assertAllClose(visible, expected_visible, atol=1e-5)
    self.assertAllInRange(visible, 0.0, 1.0)

  def test_crop_window_stays_in_the_frame_with_sides_in_range(self):
    tf.random.set_seed(0)
    tops, lefts = [], []
    for _ in range(300):
      top, left, crop_h, crop_w = detection_input.random_crop_window(90, 160, (0.5, 0.8)).numpy()
      self.assertBetween(crop_h, 45, 72)
      self.assertBetween(crop_w, 80, 128)
      self.assertAllInRange([top, top + crop_h], 0, 90)
      self.assertAllInRange([left, left + crop_w], 0, 160)
      self.assertAllClose(crop_h / 90, crop_w / 160, atol=0.02)  # The frame's aspect ratio is kept.
      tops.append(top / (90 - crop_h))
      lefts.append(left / (160 - crop_w))
    # Corners spread over the whole free range.
    self.assertLess(min(tops), 0.1)
    self.assertGreater(max(tops), 0.9)
    self.assertLess(min(lefts), 0.1)
    self.assertGreater(max(lefts), 0.9)

  def test_fixed_window_moves_boxes_and_drops_mostly_hidden_ones(self):
    frames = np.random.default_rng(1).integers(0, 255, size=(4, 40, 60, 3), dtype=np.uint8)
    boxes = np.array([[0.1, 0.1, 0.3, 0.3],    # Inside the top-left quarter window.
                      [0.4, 0.2, 0.6, 0.4],    # Half inside (rows 0.4-0.5 of 0.4-0.6): kept.
                      [0.45, 0.1, 0.95, 0.3]], np.float32)  # A tenth inside: dropped.
    classes = tf.constant([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    parser = detection_input.Parser(num_frames=2, temporal_stride=1, image_size=(20, 30), num_classes=2,
                                    max_num_boxes=3, crop_scale_range=(0.5, 0.5))
    window = tf.constant([0, 0, 20, 30], tf.int32)
    with mock.patch.object(detection_input, 'random_crop_window', return_value=window):
      cropped, kept_boxes, kept_classes = parser._random_crop(tf.constant(frames), tf.constant(boxes), classes)  # pylint: disable=protected-access
    self.assertAllEqual(cropped, frames[:, :20, :30])
    self.assertAllClose(kept_boxes, [[0.2, 0.2, 0.6, 0.6], [0.8, 0.4, 1.0, 0.8]])
    self.assertAllEqual(kept_classes, [[1.0, 0.0], [0.0, 1.0]])

  def test_cropped_clip_shows_the_object_inside_its_returned_box(self):
    frames = np.zeros((4, 90, 160, 3), np.uint8)
    box = np.array([0.4, 0.42, 0.62, 0.6])  # Inside every window of sides >= 0.8 of the frame.
    y0, x0, y1, x1 = (box * [90, 160, 90, 160]).astype(int)
    frames[:, y0:y1, x0:x1] = 255
    decoded = _record(frames, box[None], [(0,)])
    parser = detection_input.Parser(num_frames=4, temporal_stride=1, image_size=(45, 80), num_classes=1,
                                    max_num_boxes=2, box_jitter=0.0, flip_probability=0.0,
                                    crop_scale_range=(0.8, 1.0))
    tf.random.set_seed(3)
    sizes = set()
    for _ in range(10):
      features, labels = parser.parse_fn(True)(decoded)
      self.assertAllEqual(features['box_mask'], [1.0, 0.0])
      self.assertAllEqual(labels['classes'][0], [1.0])
      rows, cols = np.nonzero(features['image'].numpy()[2, ..., 0] > 128)
      found = np.array([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1]) / [45, 80, 45, 80]
      self.assertAllClose(features['boxes'][0], found, atol=1.5 / 45)
      sizes.add(round(float(features['boxes'][0][2] - features['boxes'][0][0]), 3))
    self.assertGreater(len(sizes), 3)  # The scale changed between draws.

  def test_invalid_crop_settings_are_refused(self):
    with self.assertRaisesRegex(ValueError, 'crop_scale_range'):
      detection_input.Parser(num_frames=1, temporal_stride=1, image_size=(8, 8), num_classes=1, max_num_boxes=1,
                             crop_scale_range=(0.9, 0.5))


if __name__ == '__main__':
  tf.test.main()
