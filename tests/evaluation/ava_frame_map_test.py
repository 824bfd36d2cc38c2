"""Tests of the AVA frame-level mAP against hand-computed cases."""
import math
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.evaluation import ava_frame_map

A = [0.0, 0.0, 0.5, 0.5]
B = [0.5, 0.5, 1.0, 1.0]
C = [0.0, 0.5, 0.5, 1.0]


class BoxIouTest(tf.test.TestCase):

  def test_known_overlaps(self):
    iou = ava_frame_map.box_iou(np.array([A, [0.0, 0.0, 0.5, 0.25]]), np.array([A, B, [0.0, 0.0, 0.25, 0.5]]))
    # Half of A: intersection 1/8 of a 1/4 box -> 1/8 / 1/4; both halves of A overlap in a quarter of A.
    self.assertAllClose(iou, [[1.0, 0.0, 0.5], [0.5, 0.0, 1.0 / 3.0]])

  def test_degenerate_boxes(self):
    self.assertAllEqual(ava_frame_map.box_iou(np.array([[0.2, 0.2, 0.2, 0.2]]), np.array([[0.2, 0.2, 0.2, 0.2]])),
                        [[0.0]])


class VocAveragePrecisionTest(tf.test.TestCase):

  def test_interpolated_area(self):
    # Ranked TP, FP, TP, FP with 3 ground truths: precision 1, 1/2, 2/3, 1/2; recall 1/3, 1/3, 2/3, 2/3.
    # Interpolated: 1 up to recall 1/3, 2/3 up to 2/3, nothing beyond: 1/3 + 2/9.
    ap = ava_frame_map.voc_average_precision(np.array([0.6, 0.9, 0.7, 0.8]),
                                             np.array([False, True, True, False]), 3)
    self.assertAllClose(ap, 5.0 / 9.0)

  def test_no_groundtruth_is_nan_and_no_detection_is_zero(self):
    self.assertTrue(math.isnan(ava_frame_map.voc_average_precision(np.array([0.5]), np.array([False]), 0)))
    self.assertEqual(ava_frame_map.voc_average_precision(np.zeros([0]), np.zeros([0], bool), 2), 0.0)


class FrameMAPEvaluatorTest(tf.test.TestCase, parameterized.TestCase):

  def _evaluator(self, **kwargs):
    return ava_frame_map.FrameMAPEvaluator(class_ids=[1, 2, 3], class_names={1: 'stand', 2: 'sit', 3: 'walk'},
                                           **kwargs)

  def test_perfect_detections(self):
    ev = self._evaluator()
    ev.add_groundtruth('v,0902', [A, A, B], [1, 2, 1])
    ev.add_groundtruth('v,0903', [C], [3])
    ev.add_detections('v,0902', [A, A, B], [1, 2, 1], [0.9, 0.8, 0.7])
    ev.add_detections('v,0903', [C], [3], [0.3])
    result = ev.evaluate()
    self.assertEqual(result.mean_ap, 1.0)
    self.assertEqual(result.average_precision, {1: 1.0, 2: 1.0, 3: 1.0})
    self.assertEqual(result.num_groundtruth, {1: 2, 2: 1, 3: 1})
    self.assertEqual(result.num_keyframes, 2)

  def test_mix_of_true_and_false_positives(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A, B], [1, 1])
    ev.add_groundtruth('k2', [A], [1])
    ev.add_detections('k1', [A, C], [1, 1], [0.9, 0.8])  # TP, FP (C overlaps neither A nor B by 0.5).
    ev.add_detections('k2', [A, B], [1, 1], [0.7, 0.6])  # TP, FP; B of k1 is never found.
    result = ev.evaluate()
    self.assertAllClose(result.average_precision[1], 5.0 / 9.0)
    self.assertAllClose(result.mean_ap, 5.0 / 9.0)  # Classes 2 and 3 have no ground truth.

  def test_missing_classes(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A, B], [1, 2])
    ev.add_detections('k1', [A, B], [1, 3], [0.9, 0.9])  # Class 2 never detected; class 3 has no ground truth.
    result = ev.evaluate()
    self.assertEqual(result.average_precision[1], 1.0)
    self.assertEqual(result.average_precision[2], 0.0)
    self.assertTrue(math.isnan(result.average_precision[3]))
    self.assertAllClose(result.mean_ap, 0.5)  # (1 + 0) / 2: the class without ground truth is left out.
    self.assertEqual(result.num_detections, {1: 1, 2: 0, 3: 1})

  def test_duplicate_detections_are_false_positives(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A, B], [1, 1])
    # A found twice (the second is a duplicate), then B: TP, FP, TP -> precision 1, 1/2, 2/3, recall 1/2, 1/2, 1.
    ev.add_detections('k1', [A, [0.0, 0.0, 0.5, 0.45], B], [1, 1, 1], [0.9, 0.8, 0.7])
    self.assertAllClose(ev.evaluate().average_precision[1], 0.5 * 1.0 + 0.5 * 2.0 / 3.0)

  def test_excluded_keyframes_are_ignored(self):
    ev = self._evaluator(excluded_keyframes=['bad'])
    ev.add_groundtruth('k1', [A], [1])
    ev.add_detections('k1', [A], [1], [0.5])
    ev.add_groundtruth('bad', [B, B], [1, 2])  # Unmatched ground truth...
    ev.add_detections('bad', [C], [1], [0.99])  # ... and a confident false positive: both ignored.
    result = ev.evaluate()
    self.assertEqual(result.mean_ap, 1.0)
    self.assertEqual(result.num_groundtruth[2], 0)
    self.assertEqual(result.num_keyframes, 1)

  def test_detections_on_keyframes_without_groundtruth_are_false_positives(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A], [1])
    ev.add_detections('k1', [A], [1], [0.5])
    ev.add_detections('k2', [A], [1], [0.9])  # Ranked first, false: precision 0, 1/2 at recall 0, 1.
    self.assertAllClose(ev.evaluate().mean_ap, 0.5)

  def test_classes_outside_the_evaluation_set_are_dropped(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A, B], [1, 7])
    ev.add_detections('k1', [A, C], [1, 7], [0.5, 0.9])
    result = ev.evaluate()
    self.assertEqual(result.mean_ap, 1.0)
    self.assertNotIn(7, result.average_precision)

  @parameterized.named_parameters(('at_threshold', 0.5, 1.0), ('below', 0.49, 0.0))
  def test_iou_threshold_is_inclusive(self, width, expected_ap):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [[0.0, 0.0, 1.0, 1.0]], [1])
    ev.add_detections('k1', [[0.0, 0.0, 1.0, width]], [1], [0.9])  # IoU = width.
    self.assertAllClose(ev.evaluate().average_precision[1], expected_ap)

  def test_only_the_top_detections_per_keyframe_count(self):
    ev = self._evaluator(max_detections_per_keyframe=2)
    ev.add_groundtruth('k1', [A, B], [1, 2])
    # Three detections; the correct class-2 one has the lowest score and is cut.
    ev.add_box_scores('k1', np.array([A, B]), np.array([[0.9, 0.1, 0.0], [0.8, 0.2, 0.0]]))
    result = ev.evaluate()
    self.assertEqual(result.average_precision[1], 1.0)
    self.assertEqual(result.average_precision[2], 0.0)
    self.assertEqual(result.num_detections[1], 2)

  def test_empty_and_inverted_boxes_are_dropped_as_officially(self):
    # The case: official AP 1.0 (the inverted and zero-width boxes are not false positives).
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A], [1])
    ev.add_detections('k1', [A, [0.5, 0.0, 0.0, 0.5], [0.0, 0.2, 0.5, 0.2]], [1, 1, 1], [0.5, 0.9, 0.8])
    result = ev.evaluate()
    self.assertEqual(result.average_precision[1], 1.0)
    self.assertEqual(result.num_detections[1], 1)

  def test_dropped_boxes_still_take_places_among_the_top_detections(self):
    # The cap comes first: an inverted box at 0.9 takes one of two places, so the box at 0.7 is cut and only one
    # of two ground truths is found (recall 1/2 at precision 1).
    ev = self._evaluator(max_detections_per_keyframe=2)
    ev.add_groundtruth('k1', [A, B], [1, 1])
    ev.add_detections('k1', [[0.5, 0.5, 0.5, 0.6], A, B], [1, 1, 1], [0.9, 0.8, 0.7])
    result = ev.evaluate()
    self.assertEqual(result.average_precision[1], 0.5)
    self.assertEqual(result.num_detections[1], 1)

  def test_cap_keeps_the_highest_action_ids_among_equal_scores(self):
    # The official reader's heap compares (score, action id, box): of three equal scores, ids 3 and 2 stay.
    ev = self._evaluator(max_detections_per_keyframe=2)
    ev.add_groundtruth('k1', [A, A, A], [1, 2, 3])
    ev.add_detections('k1', [A, A, A], [1, 2, 3], [0.5, 0.5, 0.5])
    self.assertEqual(ev.evaluate().average_precision, {1: 0.0, 2: 1.0, 3: 1.0})

  def test_equal_scores_across_keyframes_are_ranked_as_numpy_argsort_descending(self):
    # One ground truth; equal scores: a false positive on k1 (given first), the true positive on k2, and a lower
    # false positive on k3. The official ranking is np.argsort(scores)[::-1] of the scores in keyframe order.
    ev = self._evaluator()
    ev.add_groundtruth('k2', [B], [1])
    ev.add_detections('k1', [A], [1], [0.6])
    ev.add_detections('k2', [B], [1], [0.6])
    ev.add_detections('k3', [C], [1], [0.4])
    scores, positives = np.array([0.6, 0.6, 0.4]), np.array([False, True, False])
    ranked = positives[np.argsort(scores)[::-1]]
    # VOC AP by hand in float64: precision at each true positive, made non-increasing from the right; 1 gt.
    precision_at_tp = [np.cumsum(ranked)[i] / (i + 1) for i in range(len(ranked)) if ranked[i]]
    self.assertEqual(ev.evaluate().average_precision[1], max(precision_at_tp))
    self.assertIn(ev.evaluate().average_precision[1], (0.5, 1.0))

  def test_box_scores_expand_to_one_detection_per_class(self):
    ev = self._evaluator(max_detections_per_keyframe=0)
    ev.add_groundtruth('k1', [A, A, B], [1, 3, 2])
    ev.add_box_scores('k1', np.array([A, B]), np.array([[0.9, 0.3, 0.8], [0.1, 0.7, 0.2]]))
    result = ev.evaluate()
    # Class 1: A (0.9, TP), B (0.1, FP) -> 1. Class 2: B (0.7, TP) first -> 1. Class 3: A (0.8, TP) first -> 1.
    self.assertEqual(result.average_precision, {1: 1.0, 2: 1.0, 3: 1.0})
    self.assertEqual(result.num_detections, {1: 2, 2: 2, 3: 2})

  def test_groundtruth_added_twice_is_an_error(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A], [1])
    with self.assertRaisesRegex(ValueError, 'added twice'):
      ev.add_groundtruth('k1', [A], [1])

  def test_per_class_file(self):
    ev = self._evaluator()
    ev.add_groundtruth('k1', [A, B], [1, 2])
    ev.add_detections('k1', [A], [1], [0.9])
    path = os.path.join(self.get_temp_dir(), 'eval', 'per_class_ap.tsv')
    ava_frame_map.write_per_class_ap(ev.evaluate(), path)
    with open(path) as f:
      lines = f.read().splitlines()
    self.assertEqual(lines[1:4], ['1\tstand\t1\t1\t1.000000', '2\tsit\t1\t0\t0.000000', '3\twalk\t0\t0\tnan'])
    self.assertTrue(lines[4].startswith('mAP@0.5IOU\t0.500000'))


if __name__ == '__main__':
  tf.test.main()
