"""Frame-level mAP of spatio-temporal action detection, following the official AVA protocol (pure NumPy).

The official AVA evaluation (`ava_evaluation/` of the AVA Challenge, built on the TF Object Detection API's
`PascalDetectionEvaluator`) scores every keyframe ("frame") independently:

1. Ground truth and detections are `(box, class)` pairs per keyframe; a person box with three actions is three
   ground-truth instances of three classes. Only the evaluation classes (60 of AVA's 80) count: pairs of other
   classes are dropped on both sides.
2. Keyframes in the excluded-timestamps list are removed from ground truth and detections.
3. At most `max_detections_per_keyframe` (official: 50) detections per keyframe are kept, the highest-scoring
   over all classes (the official CSV reader's capacity, a heap of `(score, action, ymin, xmin, ymax, xmax)`
   tuples: of equal scores, the higher action id, then the larger coordinates, are kept).
4. Detections with `ymin >= ymax` or `xmin >= xmax` are then dropped, as the official per-image evaluation does:
   they take one of the 50 places but are neither true nor false positives.
5. Per keyframe and class, detections are taken by decreasing score; each is matched to the ground-truth box of
   the same class with the highest IoU. IoU >= 0.5 with a box not matched yet: true positive (the box is now
   matched); otherwise false positive. So a duplicate detection of an already matched box is a false positive.
   Detections on keyframes without ground truth are false positives.
6. Per class, detections of all keyframes (in the order their keyframes were first given detections, as the
   official reader's file order) are sorted by score as the official code does, `np.argsort(scores)[::-1]`;
   precision and recall are accumulated and the AP is Pascal VOC's (VOC 2010+ "area under the interpolated
   curve"): precision made non-increasing from the right, summed over the recall steps.
7. A class without ground truth has no AP (NaN; the official code logs a warning); the mAP is the mean over the
   classes that have ground truth (`np.nanmean`), as officially. A class with ground truth but no detection has
   AP 0.

Boxes are `[ymin, xmin, ymax, xmax]` (any consistent coordinates; IoU is scale free), areas without the "+1" of
pixel coordinates, as the official `np_box_ops`.

Equal scores: across keyframes they are ordered by NumPy's default `argsort`, reversed, exactly as the official
code, so both give the same AP on the same machine. That order is not stable and, with NumPy's SIMD sorts, may
differ between CPUs: with tied scores of different outcomes, the official AP itself depends on the machine. Within
one keyframe and class, ties are taken by decreasing coordinates, where the official code takes them in its
heap's internal order; this matters only when tied boxes of one class overlap the same ground-truth box.
"""
import dataclasses
import math
import os
import re
from typing import Dict, Hashable, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

DEFAULT_IOU_THRESHOLD = 0.5
OFFICIAL_MAX_DETECTIONS_PER_KEYFRAME = 50


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
  """Pairwise intersection over union.

  Args:
    boxes1: `[N, 4]` boxes `[ymin, xmin, ymax, xmax]`.
    boxes2: `[M, 4]` boxes.

  Returns:
    float64 `[N, M]`; 0 where the union is empty.
  """
  boxes1 = np.asarray(boxes1, np.float64).reshape(-1, 4)
  boxes2 = np.asarray(boxes2, np.float64).reshape(-1, 4)
  y1 = np.maximum(boxes1[:, None, 0], boxes2[None, :, 0])
  x1 = np.maximum(boxes1[:, None, 1], boxes2[None, :, 1])
  y2 = np.minimum(boxes1[:, None, 2], boxes2[None, :, 2])
  x2 = np.minimum(boxes1[:, None, 3], boxes2[None, :, 3])
  intersection = np.maximum(y2 - y1, 0.0) * np.maximum(x2 - x1, 0.0)
  area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
  area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
  union = area1[:, None] + area2[None, :] - intersection
  return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


def voc_average_precision(scores: np.ndarray, is_true_positive: np.ndarray, num_groundtruth: int) -> float:
  """Pascal VOC (2010+) average precision of one class.

  Args:
    scores: `[D]` detection scores.
    is_true_positive: bool `[D]`.
    num_groundtruth: ground-truth instances of the class.

  Returns:
    The AP; NaN when `num_groundtruth` is 0; 0 when there are no detections.
  """
  scores = np.asarray(scores, np.float64).reshape(-1)
  is_true_positive = np.asarray(is_true_positive, bool).reshape(-1)
  if scores.shape != is_true_positive.shape:
    raise ValueError(f'scores {scores.shape} and is_true_positive {is_true_positive.shape} differ in shape.')
  if num_groundtruth == 0:
    return math.nan
  if is_true_positive.sum() > num_groundtruth:
    raise ValueError(f'{is_true_positive.sum()} true positives exceed {num_groundtruth} ground-truth instances.')
  if scores.size == 0:
    return 0.0
  order = np.argsort(scores)[::-1]  # The official order, ties included (see the module docstring).
  tp = np.cumsum(is_true_positive[order])
  fp = np.cumsum(~is_true_positive[order])
  precision = np.concatenate([[0.0], tp / (tp + fp), [0.0]])
  recall = np.concatenate([[0.0], tp / num_groundtruth, [1.0]])
  precision = np.maximum.accumulate(precision[::-1])[::-1]
  steps = np.nonzero(recall[1:] != recall[:-1])[0] + 1
  return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


@dataclasses.dataclass
class FrameMAPResult:
  """The outcome of an evaluation.

  Attributes:
    mean_ap: mean of `average_precision` over classes with ground truth (NaN if none has).
    average_precision: class id -> AP (NaN for a class without ground truth).
    num_groundtruth: class id -> ground-truth instances.
    num_detections: class id -> detections scored.
    class_names: class id -> display name.
    num_keyframes: keyframes with ground truth that were evaluated.
  """
  mean_ap: float
  average_precision: Dict[int, float]
  num_groundtruth: Dict[int, int]
  num_detections: Dict[int, int]
  class_names: Dict[int, str]
  num_keyframes: int

  def to_text(self) -> str:
    """Tab-separated per-class table: class_id, name, num_groundtruth, num_detections, AP; then the mAP."""
    lines = ['class_id\tname\tnum_groundtruth\tnum_detections\tAP@0.5IOU']
    for class_id in sorted(self.average_precision):
      ap = self.average_precision[class_id]
      lines.append(f'{class_id}\t{self.class_names[class_id]}\t{self.num_groundtruth[class_id]}\t'
                   f'{self.num_detections[class_id]}\t{"nan" if math.isnan(ap) else f"{ap:.6f}"}')
    lines.append(f'mAP@0.5IOU\t{self.mean_ap:.6f}\t(over {sum(1 for v in self.num_groundtruth.values() if v)} '
                 f'classes with ground truth, {self.num_keyframes} keyframes)')
    return '\n'.join(lines) + '\n'


def write_per_class_ap(result: FrameMAPResult, path: str) -> None:
  """Writes `result.to_text()` to `path` (local or any `tf.io.gfile` file system)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Only for gfile; the evaluator is NumPy.
  tf.io.gfile.makedirs(os.path.dirname(path) or '.')
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(result.to_text())


class FrameMAPEvaluator:
  """Accumulates ground truth and detections per keyframe, then computes the frame-level mAP.

  Keyframes are identified by any hashable key, e.g. `(video_id, timestamp)` or `'video_id,0902'`.
  """

  def __init__(self,
               class_ids: Sequence[int],
               class_names: Optional[Mapping[int, str]] = None,
               iou_threshold: float = DEFAULT_IOU_THRESHOLD,
               max_detections_per_keyframe: int = OFFICIAL_MAX_DETECTIONS_PER_KEYFRAME,
               excluded_keyframes: Iterable[Hashable] = ()):
    """Initialises the evaluator.

    Args:
      class_ids: the evaluation classes; pairs of any other class are ignored (the official whitelist).
      class_names: optional display names of the classes (default: the id as text).
      iou_threshold: IoU needed for a match (official: 0.5).
      max_detections_per_keyframe: highest-scoring detections kept per keyframe over all classes (official 50);
        0 keeps all.
      excluded_keyframes: keys whose ground truth and detections are ignored.
    """
    if not class_ids:
      raise ValueError('class_ids is empty: pass the evaluation classes.')
    if not 0.0 < iou_threshold <= 1.0:
      raise ValueError(f'iou_threshold must be in (0, 1], got {iou_threshold}.')
    if max_detections_per_keyframe < 0:
      raise ValueError(f'max_detections_per_keyframe must be >= 0, got {max_detections_per_keyframe}.')
    self._class_ids = [int(c) for c in class_ids]
    self._class_set = set(self._class_ids)
    names = dict(class_names or {})
    self._class_names = {c: str(names.get(c, c)) for c in self._class_ids}
    self._iou_threshold = iou_threshold
    self._max_detections = max_detections_per_keyframe
    self._excluded = set(excluded_keyframes)
    self.reset()

  def reset(self) -> None:
    """Forgets everything added."""
    self._groundtruth: Dict[Hashable, Tuple[np.ndarray, np.ndarray]] = {}
    self._detections: Dict[Hashable, List[Tuple[np.ndarray, np.ndarray, np.ndarray]]] = {}

  def _keep(self, labels: np.ndarray) -> np.ndarray:
    return np.array([int(label) in self._class_set for label in labels], bool)

  def add_groundtruth(self, key: Hashable, boxes: np.ndarray, labels: np.ndarray) -> None:
    """Adds the ground truth of one keyframe (once per keyframe).

    Args:
      key: the keyframe.
      boxes: `[N, 4]` boxes, one row per (box, action) pair.
      labels: int `[N]` class ids.
    """
    if key in self._excluded:
      return
    if key in self._groundtruth:
      raise ValueError(f'Ground truth of keyframe {key!r} was added twice: each keyframe must appear once in the '
                       'evaluation data.')
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    if len(boxes) != len(labels):
      raise ValueError(f'Keyframe {key!r}: {len(boxes)} ground-truth boxes but {len(labels)} labels.')
    keep = self._keep(labels)
    self._groundtruth[key] = (boxes[keep], labels[keep])

  def add_detections(self, key: Hashable, boxes: np.ndarray, labels: np.ndarray, scores: np.ndarray) -> None:
    """Adds detections of one keyframe; may be called several times per keyframe.

    Args:
      key: the keyframe.
      boxes: `[D, 4]` boxes, one row per (box, class) detection.
      labels: int `[D]` class ids.
      scores: `[D]` confidences.
    """
    if key in self._excluded:
      return
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    labels = np.asarray(labels, np.int64).reshape(-1)
    scores = np.asarray(scores, np.float64).reshape(-1)
    if not len(boxes) == len(labels) == len(scores):
      raise ValueError(f'Keyframe {key!r}: {len(boxes)} boxes, {len(labels)} labels and {len(scores)} scores.')
    keep = self._keep(labels)
    self._detections.setdefault(key, []).append((boxes[keep], labels[keep], scores[keep]))

  def add_box_scores(self, key: Hashable, boxes: np.ndarray, class_scores: np.ndarray,
                     class_ids: Optional[Sequence[int]] = None) -> None:
    """Adds the per-class scores of person boxes: box i yields one detection per class with its score.

    Args:
      key: the keyframe.
      boxes: `[P, 4]` person boxes.
      class_scores: `[P, C]` per-class probabilities.
      class_ids: the class id of each of the C columns (default: the evaluator's `class_ids`).
    """
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    class_scores = np.asarray(class_scores, np.float64).reshape(len(boxes), -1)
    ids = np.asarray(self._class_ids if class_ids is None else class_ids, np.int64)
    if class_scores.shape[1] != len(ids):
      raise ValueError(f'class_scores has {class_scores.shape[1]} columns for {len(ids)} class ids.')
    num_boxes, num_classes = class_scores.shape
    self.add_detections(key, np.repeat(boxes, num_classes, axis=0), np.tile(ids, num_boxes),
                        class_scores.reshape(-1))

  def _keyframe_detections(self, key: Hashable) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = self._detections.get(key, [])
    if not parts:
      return np.zeros([0, 4]), np.zeros([0], np.int64), np.zeros([0])
    boxes = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    scores = np.concatenate([p[2] for p in parts])
    if self._max_detections and len(scores) > self._max_detections:
      # The official reader's heap keeps the largest (score, label, ymin, xmin, ymax, xmax) tuples.
      ranked = np.lexsort((-boxes[:, 3], -boxes[:, 2], -boxes[:, 1], -boxes[:, 0], -labels, -scores))
      keep = np.sort(ranked[:self._max_detections])
      boxes, labels, scores = boxes[keep], labels[keep], scores[keep]
    # After the cap, as officially: an empty or inverted box takes a place among the 50 but is never scored.
    valid = (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])
    return boxes[valid], labels[valid], scores[valid]

  def _match_keyframe(self, key: Hashable) -> List[Tuple[int, float, bool]]:
    """(class id, score, is true positive) of every detection kept on one keyframe."""
    gt_boxes, gt_labels = self._groundtruth.get(key, (np.zeros([0, 4]), np.zeros([0], np.int64)))
    boxes, labels, scores = self._keyframe_detections(key)
    outcomes = []
    for class_id in np.unique(labels):
      det = np.nonzero(labels == class_id)[0]
      det = det[np.lexsort((-boxes[det, 3], -boxes[det, 2], -boxes[det, 1], -boxes[det, 0], -scores[det]))]
      gt = gt_boxes[gt_labels == class_id]
      matched = np.zeros(len(gt), bool)
      iou = box_iou(boxes[det], gt)
      for row, index in enumerate(det):
        is_tp = False
        if len(gt):
          best = int(np.argmax(iou[row]))
          if iou[row, best] >= self._iou_threshold and not matched[best]:
            matched[best] = is_tp = True
        outcomes.append((int(class_id), float(scores[index]), is_tp))
    return outcomes

  def evaluate(self) -> FrameMAPResult:
    """Computes per-class AP and their mean over the classes that have ground truth."""
    num_gt = {c: 0 for c in self._class_ids}
    for _, labels in self._groundtruth.values():
      for label in labels:
        num_gt[int(label)] += 1
    scores = {c: [] for c in self._class_ids}
    positives = {c: [] for c in self._class_ids}
    # Keyframes in the order they got detections (the official reader's file order); others score nothing.
    for key in self._detections:
      for class_id, score, is_tp in self._match_keyframe(key):
        scores[class_id].append(score)
        positives[class_id].append(is_tp)
    average_precision = {c: voc_average_precision(np.array(scores[c]), np.array(positives[c], bool), num_gt[c])
                         for c in self._class_ids}
    with_gt = [ap for c, ap in average_precision.items() if num_gt[c]]
    mean_ap = float(np.mean(with_gt)) if with_gt else math.nan
    return FrameMAPResult(
        mean_ap=mean_ap, average_precision=average_precision, num_groundtruth=num_gt,
        num_detections={c: len(scores[c]) for c in self._class_ids}, class_names=dict(self._class_names),
        num_keyframes=len(self._groundtruth))


# --- AVA files the evaluation reads (the converter in data_tools.ava reads them too). ---


def keyframe_key(video_id: str, timestamp: int) -> str:
  """The key of a keyframe: `'<video id>,<timestamp as 4 digits>'`, as written in AVA's CSV files."""
  return f'{video_id},{int(timestamp):04d}'


def _read_text(path: str) -> str:
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # gfile reads gs:// paths too.
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} does not exist.')
  with tf.io.gfile.GFile(path) as f:
    return f.read()


_PBTXT_ITEM = re.compile(r'item\s*\{(.*?)\}', re.DOTALL)
_PBTXT_NAME = re.compile(r'name:\s*"((?:[^"\\]|\\.)*)"')
_PBTXT_ID = re.compile(r'\bid:\s*(\d+)')


def parse_label_map_pbtxt(text: str, path: str = '<text>') -> List[Tuple[int, str]]:
  """(action id, name) of every `item { name: "..." id: N }` of an AVA label map, in file order.

  Raises:
    ValueError: on an item without a name or id, or a repeated id.
  """
  items = []
  for match in _PBTXT_ITEM.finditer(text):
    body = match.group(1)
    name, action_id = _PBTXT_NAME.search(body), _PBTXT_ID.search(body)
    if not name or not action_id:
      raise ValueError(f'{path}: label map item without a name or an id: {{{body.strip()}}}.')
    items.append((int(action_id.group(1)), name.group(1)))
  if not items:
    raise ValueError(f'{path}: no "item {{ name: ... id: ... }}" entries; is it an AVA label map (.pbtxt)?')
  ids = [i for i, _ in items]
  if len(set(ids)) != len(ids):
    raise ValueError(f'{path}: an action id appears twice.')
  return items


def read_label_map_pbtxt(path: str) -> List[Tuple[int, str]]:
  """`parse_label_map_pbtxt` of the file at `path`."""
  return parse_label_map_pbtxt(_read_text(path), path)


def read_excluded_timestamps(path: str) -> set:
  """Keyframe keys (see `keyframe_key`) of AVA's excluded-timestamps CSV (`video_id,timestamp` per line)."""
  keys = set()
  for number, line in enumerate(_read_text(path).splitlines(), 1):
    if not line.strip():
      continue
    fields = line.strip().split(',')
    if len(fields) != 2 or not fields[1].strip().isdigit():
      raise ValueError(f'{path}:{number}: expected "video_id,timestamp", got {line!r}.')
    keys.add(keyframe_key(fields[0].strip(), int(fields[1])))
  return keys
