"""AVA (v2.1 / v2.2) -> keyframe TFRecords for action detection, through the data toolchain's Beam pipeline.

Inputs (from https://research.google.com/ava/download.html):
- the annotation CSVs `ava_{train,val}_v2.X.csv`: `video_id, timestamp, x1, y1, x2, y2, action_id, person_id`,
  one row per (person box, action), boxes normalised to [0, 1], keyframes at 1 fps (seconds 902-1798);
- `ava_{train,val}_excluded_timestamps_v2.X.csv`: `video_id, timestamp` keyframes left out of training and
  evaluation;
- the label map of the 60 evaluation classes `ava_action_list_v2.X_for_activitynet_2019.pbtxt` (v2.1:
  `ava_action_list_v2.1_for_activitynet_2018.pbtxt`); actions of other classes are dropped, as the official
  evaluation does; class index = position in that file;
- optional person proposals (detector boxes), e.g. SlowFast's `ava_{train,val}_predicted_boxes.csv`:
  `video_id, timestamp, x1, y1, x2, y2, <ignored>, score`;
- the movies, `<movies_dir>/<video_id>.<ext>` (full movies, or the 15-minute cuts starting at 900 s: pass
  `--segment_start 900`).

Output: one SequenceExample per keyframe (layout: `official_cvrl.dataloaders.detection_keys`) holding the frames
of `[t - s, t + s)` around the keyframe at `--fps`, with `s = num_frames * temporal_stride / (2 * fps)` (32 frames
at stride 2 and 30 fps: 2.13 s, 64 frames), the ground-truth boxes with their multi-label actions and the
proposals with scores. Training keeps the keyframes with at least one evaluation-class action; validation keeps
every keyframe with ground truth or proposals (detections on keyframes without ground truth are false positives
in the official metric). Excluded keyframes are skipped. Shards, resuming and the failure report come from
`data_tools.pipeline`; the label map is copied next to the shards.

    python -m data_tools.ava --annotations ava_val_v2.2.csv --excluded ava_val_excluded_timestamps_v2.2.csv \
      --label_map ava_action_list_v2.2_for_activitynet_2019.pbtxt --proposals ava_val_predicted_boxes.csv \
      --movies_dir movies/ --split val --output_dir gs://YOUR_BUCKET/ava_v2.2
"""
import csv
import dataclasses
import io
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from data_tools import pipeline
from data_tools import report
from data_tools import sequence_example
from data_tools import shards
from data_tools import video_reader
from official_cvrl.dataloaders import detection_keys
from official_cvrl.dataloaders import feature_keys
from official_cvrl.evaluation import ava_frame_map

_FORMAT_VERSION = 1
MOVIE_EXTENSIONS = ('.mkv', '.mp4', '.webm', '.avi', '.mov')


def make_detection_example(*, frames: np.ndarray, keyframe_index: int, video_id: str, timestamp: int, fps: float,
                           boxes: np.ndarray, box_labels: Sequence[Sequence[int]],
                           proposals: Optional[np.ndarray] = None, proposal_scores: Optional[np.ndarray] = None,
                           jpeg_quality: int = sequence_example.DEFAULT_JPEG_QUALITY) -> tf.train.SequenceExample:
  """Assembles one keyframe record.

  Args:
    frames: uint8 `[T, H, W, 3]` frames around the keyframe.
    keyframe_index: position of the keyframe in `frames`.
    video_id: the movie id.
    timestamp: the keyframe's second.
    fps: frame rate of `frames`.
    boxes: `[N, 4]` normalised `[ymin, xmin, ymax, xmax]` ground-truth boxes.
    box_labels: for each box, its class indices.
    proposals: optional `[P, 4]` proposal boxes.
    proposal_scores: `[P]` detector scores of the proposals.
    jpeg_quality: JPEG quality of the frames.

  Returns:
    The SequenceExample.
  """
  boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
  if len(box_labels) != len(boxes):
    raise ValueError(f'{video_id},{timestamp}: {len(boxes)} boxes but {len(box_labels)} label lists.')
  if not 0 <= keyframe_index < len(frames):
    raise ValueError(f'{video_id},{timestamp}: keyframe index {keyframe_index} outside {len(frames)} frames.')
  proposals = np.zeros([0, 4], np.float32) if proposals is None else np.asarray(proposals, np.float32).reshape(-1, 4)
  scores = np.ones([len(proposals)], np.float32) if proposal_scores is None else np.asarray(proposal_scores)
  if len(scores) != len(proposals):
    raise ValueError(f'{video_id},{timestamp}: {len(proposals)} proposals but {len(scores)} scores.')
  encoded = [sequence_example.encode_jpeg(f, jpeg_quality) for f in frames]
  example = sequence_example.make_sequence_example(
      encoded, video_id=video_id, height=frames.shape[1], width=frames.shape[2], fps=fps, source_fps=fps)
  context = example.context.feature
  context[detection_keys.KEYFRAME_INDEX_KEY].int64_list.value.append(int(keyframe_index))
  context[detection_keys.KEYFRAME_TIMESTAMP_KEY].int64_list.value.append(int(timestamp))
  for column, key in enumerate(detection_keys.BOX_KEYS):
    context[key].float_list.value.extend(boxes[:, column].tolist())
  for column, key in enumerate(detection_keys.PROPOSAL_KEYS):
    context[key].float_list.value.extend(proposals[:, column].tolist())
  context[detection_keys.PROPOSAL_SCORE_KEY].float_list.value.extend([float(s) for s in scores])
  for box_index, labels in enumerate(box_labels):
    for label in labels:
      context[detection_keys.LABEL_BOX_INDEX_KEY].int64_list.value.append(box_index)
      context[detection_keys.LABEL_CLASS_INDEX_KEY].int64_list.value.append(int(label))
  return example


# --- CSV parsing. ---


@dataclasses.dataclass
class Keyframe:
  """Everything known about one keyframe.

  Attributes:
    video_id / timestamp: the keyframe.
    boxes: `[ymin, xmin, ymax, xmax]` ground-truth person boxes, in first-seen order.
    labels: class indices (positions in the label map) of each box.
    proposals: proposal boxes and scores.
  """
  video_id: str
  timestamp: int
  boxes: List[Tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
  labels: List[List[int]] = dataclasses.field(default_factory=list)
  proposals: List[Tuple[float, float, float, float]] = dataclasses.field(default_factory=list)
  proposal_scores: List[float] = dataclasses.field(default_factory=list)

  @property
  def key(self) -> str:
    return ava_frame_map.keyframe_key(self.video_id, self.timestamp)


def _csv_rows(path: str):
  with tf.io.gfile.GFile(path) as f:
    text = f.read()
  for number, row in enumerate(csv.reader(io.StringIO(text)), 1):
    if row and any(field.strip() for field in row):
      yield number, [field.strip() for field in row]


def _box(row: List[str], path: str, number: int) -> Tuple[float, float, float, float]:
  try:
    x1, y1, x2, y2 = (float(v) for v in row[2:6])
  except ValueError:
    raise ValueError(f'{path}:{number}: box coordinates {row[2:6]} are not numbers.') from None
  if not (0.0 <= x1 <= x2 <= 1.0 and 0.0 <= y1 <= y2 <= 1.0):
    raise ValueError(f'{path}:{number}: box {row[2:6]} is not a normalised x1 <= x2, y1 <= y2 box in [0, 1].')
  return (y1, x1, y2, x2)


def read_annotations(path: str, action_to_index: Dict[int, int],
                     keyframes: Optional[Dict[str, Keyframe]] = None) -> Dict[str, Keyframe]:
  """Parses an AVA annotation CSV into keyframes (actions outside the label map dropped, boxes kept).

  A person's box appears once per action; rows are grouped by (keyframe, person_id) or, without a person id, by
  identical coordinates.

  Args:
    path: the CSV.
    action_to_index: AVA action id -> class index (the evaluation classes).
    keyframes: keyframes to add to (e.g. those of the proposals); a new dict when None.

  Returns:
    key -> `Keyframe`.
  """
  keyframes = {} if keyframes is None else keyframes
  box_index: Dict[Tuple[str, Any], int] = {}
  for number, row in _csv_rows(path):
    if len(row) not in (7, 8):
      raise ValueError(f'{path}:{number}: expected "video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]", got '
                       f'{len(row)} fields.')
    try:
      timestamp, action = int(row[1]), int(row[6])
    except ValueError:
      raise ValueError(f'{path}:{number}: timestamp {row[1]!r} or action id {row[6]!r} is not an integer.') from None
    box = _box(row, path, number)
    keyframe = keyframes.setdefault(ava_frame_map.keyframe_key(row[0], timestamp), Keyframe(row[0], timestamp))
    person = (keyframe.key, row[7] if len(row) == 8 and row[7] else box)
    if person not in box_index:
      box_index[person] = len(keyframe.boxes)
      keyframe.boxes.append(box)
      keyframe.labels.append([])
    if action in action_to_index and action_to_index[action] not in keyframe.labels[box_index[person]]:
      keyframe.labels[box_index[person]].append(action_to_index[action])
  return keyframes


def read_proposals(path: str, keyframes: Optional[Dict[str, Keyframe]] = None) -> Dict[str, Keyframe]:
  """Adds the person proposals of a CSV (`video_id,timestamp,x1,y1,x2,y2,<ignored>,score`) to `keyframes`."""
  keyframes = {} if keyframes is None else keyframes
  for number, row in _csv_rows(path):
    if len(row) != 8:
      raise ValueError(f'{path}:{number}: expected "video_id,timestamp,x1,y1,x2,y2,label,score", got {len(row)} '
                       'fields.')
    try:
      timestamp, score = int(row[1]), float(row[7])
    except ValueError:
      raise ValueError(f'{path}:{number}: timestamp {row[1]!r} or score {row[7]!r} is not a number.') from None
    keyframe = keyframes.setdefault(ava_frame_map.keyframe_key(row[0], timestamp), Keyframe(row[0], timestamp))
    keyframe.proposals.append(_box(row, path, number))
    keyframe.proposal_scores.append(score)
  return keyframes


def select_keyframes(keyframes: Dict[str, Keyframe], excluded: set, is_training: bool) -> List[Keyframe]:
  """The keyframes to convert, sorted by key: excluded ones dropped; training needs an evaluation-class action.

  In training, boxes without an evaluation-class action are removed (they carry no target).
  """
  selected = []
  for key in sorted(keyframes):
    keyframe = keyframes[key]
    if key in excluded:
      continue
    if is_training:
      kept = [(b, l) for b, l in zip(keyframe.boxes, keyframe.labels) if l]
      if not kept:
        continue
      keyframe = dataclasses.replace(keyframe, boxes=[b for b, _ in kept], labels=[l for _, l in kept])
    selected.append(keyframe)
  return selected


def find_movie(movies_dir: str, video_id: str) -> str:
  """`<movies_dir>/<video_id>.<ext>` for the first extension of `MOVIE_EXTENSIONS` that exists."""
  for extension in MOVIE_EXTENSIONS:
    path = os.path.join(movies_dir, video_id + extension)
    if tf.io.gfile.exists(path):
      return path
  raise video_reader.MissingFileError(
      os.path.join(movies_dir, video_id + '.*'),
      f'no movie of {video_id} in {movies_dir} (looked for {", ".join(MOVIE_EXTENSIONS)}); download it from the '
      'AVA file list')


# --- Conversion. ---


@dataclasses.dataclass(frozen=True)
class ClipSettings:
  """How the frames around a keyframe are stored."""
  num_frames: int = 32
  temporal_stride: int = 2
  fps: float = 30.0
  short_side: int = 256
  segment_start: float = 0.0
  jpeg_quality: int = sequence_example.DEFAULT_JPEG_QUALITY

  @property
  def half_span(self) -> float:
    """Seconds stored on each side of the keyframe."""
    return self.num_frames * self.temporal_stride / (2.0 * self.fps)


class KeyframeConverter(pipeline.ItemConverter):
  """One `Keyframe` -> one detection record: decodes `[t - s, t + s)` of its movie."""

  def __init__(self, settings: ClipSettings, movies_dir: str):
    self._settings = settings
    self._movies_dir = movies_dir

  def fingerprint(self) -> str:
    return f'ava-keyframe-v{_FORMAT_VERSION} {self._settings} {self._movies_dir}'

  def describe(self, payload: Keyframe) -> Dict[str, Any]:
    return {'video_id': payload.video_id, 'timestamp': payload.timestamp, 'num_boxes': len(payload.boxes),
            'num_proposals': len(payload.proposals)}

  def convert(self, payload: Keyframe) -> pipeline.Converted:
    settings = self._settings
    path = find_movie(self._movies_dir, payload.video_id)
    time = payload.timestamp - settings.segment_start
    start = max(0.0, time - settings.half_span)
    frames, _ = video_reader.read_video(path, fps=settings.fps, short_side=settings.short_side, start=start,
                                        end=time + settings.half_span)
    keyframe_index = min(len(frames) - 1, int(round((time - start) * settings.fps)))
    example = make_detection_example(
        frames=frames, keyframe_index=keyframe_index, video_id=payload.video_id, timestamp=payload.timestamp,
        fps=settings.fps, boxes=np.array(payload.boxes, np.float32).reshape(-1, 4), box_labels=payload.labels,
        proposals=np.array(payload.proposals, np.float32).reshape(-1, 4),
        proposal_scores=np.array(payload.proposal_scores, np.float32),
        jpeg_quality=settings.jpeg_quality)
    return pipeline.Converted([example.SerializeToString()],
                              {'num_frames': len(frames), 'keyframe_index': keyframe_index})


def convert(annotations: str, label_map: str, movies_dir: str, output_dir: str, split: str,
            excluded: str = '', proposals: str = '', is_training: Optional[bool] = None,
            settings: ClipSettings = ClipSettings(), num_shards: int = 0,
            pipeline_args: Sequence[str] = (), in_process: Optional[bool] = None) -> pipeline.RunResult:
  """Converts one AVA split; see the module docstring.

  Args:
    annotations: annotation CSV.
    label_map: the evaluation-class label map (.pbtxt); copied to `output_dir`.
    movies_dir: folder of the movies.
    output_dir: where shards `<split>-*.tfrecord` and the report go.
    split: shard prefix ('train', 'val').
    excluded: excluded-timestamps CSV, or ''.
    proposals: person proposals CSV, or ''.
    is_training: keep only keyframes with an evaluation-class action; default: split == 'train'.
    settings: the clip settings.
    num_shards: shards; 0 picks a size-based count.
    pipeline_args: Beam options.
    in_process: see `pipeline.run`.

  Returns:
    The pipeline's `RunResult`.
  """
  items_map = ava_frame_map.read_label_map_pbtxt(label_map)
  action_to_index = {action: index for index, (action, _) in enumerate(items_map)}
  keyframes = read_proposals(proposals) if proposals else {}
  read_annotations(annotations, action_to_index, keyframes)
  excluded_keys = ava_frame_map.read_excluded_timestamps(excluded) if excluded else set()
  is_training = split == 'train' if is_training is None else is_training
  selected = select_keyframes(keyframes, excluded_keys, is_training)
  tf.io.gfile.makedirs(output_dir)
  tf.io.gfile.copy(label_map, os.path.join(output_dir, os.path.basename(label_map)), overwrite=True)
  items = [pipeline.WorkItem(k.key, k) for k in selected]
  max_boxes = max((len(k.boxes) for k in selected), default=0)
  print(f'[{split}] {len(selected)} keyframes ({len(keyframes) - len(selected)} left out: excluded or without '
        f'an evaluation-class action); at most {max_boxes} ground-truth boxes per keyframe (set max_num_boxes '
        'at least to this).')
  return pipeline.run(items, KeyframeConverter(settings, movies_dir), output_dir=output_dir, prefix=split,
                      num_shards=num_shards or shards.auto_num_shards(len(items)), pipeline_args=pipeline_args,
                      in_process=in_process, unit='keyframes')


def define_flags() -> None:
  flags.DEFINE_string('annotations', None, 'AVA annotation CSV (ava_<split>_v2.X.csv).')
  flags.DEFINE_string('label_map', None, 'Label map of the evaluation classes (.pbtxt).')
  flags.DEFINE_string('movies_dir', None, 'Folder with <video_id>.<ext> movies.')
  flags.DEFINE_string('output_dir', None, 'Where to write the shards.')
  flags.DEFINE_string('split', 'train', 'Shard prefix; "train" keeps only keyframes with actions.')
  flags.DEFINE_string('excluded', '', 'Excluded-timestamps CSV.')
  flags.DEFINE_string('proposals', '', 'Person proposals CSV (video_id,timestamp,x1,y1,x2,y2,label,score).')
  flags.DEFINE_integer('num_frames', 32, 'Frames per clip the model samples (sets the stored span).')
  flags.DEFINE_integer('temporal_stride', 2, 'Stride of the clip the model samples (sets the stored span).')
  flags.DEFINE_float('fps', 30.0, 'Frame rate of the stored frames.')
  flags.DEFINE_integer('short_side', 256, 'Short side of the stored frames.')
  flags.DEFINE_float('segment_start', 0.0, 'Movie time of the files\' first frame: 0 for full movies, 900 for '
                     'the 15-minute cuts.')
  flags.DEFINE_integer('num_shards', 0, 'Number of shards (0: by size).')


def main(argv: Sequence[str]) -> None:
  f = flags.FLAGS
  for name in ('annotations', 'label_map', 'movies_dir', 'output_dir'):
    if not getattr(f, name):
      raise app.UsageError(f'--{name} is required.')
  try:
    beam_args = pipeline.resolve_runner(argv[1:])
    unknown, _ = pipeline.unknown_options(beam_args)
  except ValueError as e:  # A --runner whose module cannot be imported.
    raise app.UsageError(str(e)) from e
  if unknown:
    raise app.UsageError(f'unknown option(s) {unknown}: neither options of data_tools.ava nor Apache Beam options.')
  settings = ClipSettings(num_frames=f.num_frames, temporal_stride=f.temporal_stride, fps=f.fps,
                          short_side=f.short_side, segment_start=f.segment_start)
  result = convert(f.annotations, f.label_map, f.movies_dir, f.output_dir, f.split, excluded=f.excluded,
                   proposals=f.proposals, settings=settings, num_shards=f.num_shards, pipeline_args=beam_args)
  print(f'[{f.split}] {report.summary_line(result.entries)}; report: {result.report_path}')


if __name__ == '__main__':
  # Run the importable module rather than __main__: Beam workers unpickle the Keyframe items by module path, and
  # `__main__.Keyframe` does not exist in a worker process.
  from data_tools import ava as ava_module  # pylint: disable=g-import-not-at-top,import-self
  ava_module.define_flags()
  # --help lists the key flags of __main__ only; the flags are defined in the importable module, so adopt them.
  flags.adopt_module_key_flags(ava_module)
  # Options absl does not know are Beam's (--runner, --direct_num_workers, ...): keep them for the pipeline.
  app.run(ava_module.main, flags_parser=lambda argv: flags.FLAGS(argv, known_only=True))
