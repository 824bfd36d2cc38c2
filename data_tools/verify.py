r"""Checks a TFRecord set before training on it, and prints its statistics.

  python -m data_tools.verify --input 'data/demo/train-*.tfrecord' --label_map data/demo/label_map.txt

Reports videos per class, frames per video, resolutions, frame rates, missing optional keys, and decodes the
JPEG frames of a few sampled videos. Exits with status 1, naming the file (and record), when the set is not what
our tasks read: no matching files, a file that is not a TFRecord, a record that is not a tf.train.SequenceExample
or lacks `image/encoded`, a file that ends inside a record (also inside a record header, which TensorFlow's reader
skips silently), a video with zero frames, undecodable frames, sizes that disagree with the stored
height/width, a class index outside the label map, a shard set `<prefix>-SSSSS-of-NNNNN.tfrecord` with shards
missing (what an interrupted distributed conversion or copy leaves), or no records at all. Empty shards are only a
warning (a shard whose inputs all failed conversion is written empty so the set stays complete).
"""

import argparse
import collections
import dataclasses
import json
import os
import random
import re
import sys
from typing import Dict, List, Optional, Sequence

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from google.protobuf import message as protobuf_message
import numpy as np
import tensorflow as tf

from data_tools import label_map as label_map_lib
from official_cvrl.dataloaders import feature_keys
from official_cvrl.utils import input_files
# pylint: enable=g-import-not-at-top,wrong-import-position

# Context keys our writer stores; absent ones are reported (they are optional for readers).
OPTIONAL_CONTEXT_KEYS = (feature_keys.LABEL_INDEX_KEY, feature_keys.LABEL_STRING_KEY, feature_keys.VIDEO_ID_KEY,
                         feature_keys.SOURCE_FPS_KEY, feature_keys.FPS_KEY, feature_keys.NUM_FRAMES_KEY,
                         feature_keys.HEIGHT_KEY, feature_keys.WIDTH_KEY)
_MAX_ERRORS = 20


class VerifyError(Exception):
  """The set cannot be used for training; the message lists what is wrong and where."""


@dataclasses.dataclass
class Stats:
  """What `verify` found.

  Attributes:
    files: the files read, sorted.
    num_videos: records read.
    videos_per_class: class name (or index) -> number of videos.
    frames_per_video: number of frames of every video.
    resolutions: 'HxW' -> number of videos.
    fps: stored frame rate -> number of videos.
    missing_keys: optional context key -> number of videos without it.
    decoded_videos: videos whose frames were all JPEG-decoded and checked.
    warnings: problems that do not stop training.
    errors: problems that do; `verify` raises when there are any.
  """
  files: List[str] = dataclasses.field(default_factory=list)
  num_videos: int = 0
  videos_per_class: Dict[str, int] = dataclasses.field(default_factory=dict)
  frames_per_video: List[int] = dataclasses.field(default_factory=list)
  resolutions: Dict[str, int] = dataclasses.field(default_factory=dict)
  fps: Dict[str, int] = dataclasses.field(default_factory=dict)
  missing_keys: Dict[str, int] = dataclasses.field(default_factory=dict)
  decoded_videos: int = 0
  warnings: List[str] = dataclasses.field(default_factory=list)
  errors: List[str] = dataclasses.field(default_factory=list)

  def to_json(self) -> Dict[str, object]:
    frames = self.frames_per_video
    return {'files': len(self.files), 'videos': self.num_videos, 'videos_per_class': self.videos_per_class,
            'frames_per_video': {'min': min(frames, default=0), 'max': max(frames, default=0),
                                 'mean': float(np.mean(frames)) if frames else 0.0},
            'resolutions': self.resolutions, 'fps': self.fps, 'missing_keys': self.missing_keys,
            'decoded_videos': self.decoded_videos, 'warnings': self.warnings, 'errors': self.errors}


def _short_error(error: Exception) -> str:
  """The useful part of a TensorFlow error message (without the function-node and op wrappers)."""
  text = str(error).splitlines()[0]
  text = re.sub(r'\{\{function_node [^}]*\}\}\s*', '', text)
  return re.sub(r'\s*\[Op:[^\]]*\].*$', '', text).strip()


def _context_values(example: tf.train.SequenceExample, key: str) -> list:
  feature = example.context.feature.get(key)
  if feature is None:
    return []
  kind = feature.WhichOneof('kind')
  return list(getattr(feature, kind).value) if kind else []


def _check_record(where: str, raw: bytes, labels: Optional[label_map_lib.LabelMap], stats: Stats,
                  counters: Dict[str, collections.Counter]) -> Optional[tf.train.SequenceExample]:
  """Parses one record, updates the statistics; returns None (after logging an error) when unusable."""
  try:
    example = tf.train.SequenceExample.FromString(raw)
  except protobuf_message.DecodeError as e:
    stats.errors.append(f'{where}: not a tf.train.SequenceExample ({e}). Convert videos with data_tools.convert.')
    return None
  frames = example.feature_lists.feature_list.get(feature_keys.IMAGE_KEY)
  if frames is None:
    hint = (' It looks like a tf.train.Example of single images; video tasks need one SequenceExample per video.'
            if feature_keys.IMAGE_KEY in example.context.feature else '')
    stats.errors.append(f'{where}: no sequence feature "{feature_keys.IMAGE_KEY}" (JPEG frames).{hint}')
    return None
  num_frames = len(frames.feature)
  if not num_frames:
    stats.errors.append(f'{where}: "{feature_keys.IMAGE_KEY}" holds zero frames.')
    return None
  stored = _context_values(example, feature_keys.NUM_FRAMES_KEY)
  if stored and stored[0] != num_frames:
    stats.errors.append(f'{where}: {feature_keys.NUM_FRAMES_KEY} says {stored[0]} frames but there are '
                        f'{num_frames}.')
  stats.frames_per_video.append(num_frames)
  for key in OPTIONAL_CONTEXT_KEYS:
    if key not in example.context.feature:
      counters['missing'][key] += 1
  indices = _context_values(example, feature_keys.LABEL_INDEX_KEY)
  names = [n.decode('utf-8', 'replace') for n in _context_values(example, feature_keys.LABEL_STRING_KEY)]
  if indices and indices[0] != feature_keys.UNLABELED_INDEX:
    index = indices[0]
    if labels is not None:
      if not 0 <= index < len(labels):
        stats.errors.append(f'{where}: class index {index} is outside the label map {labels.path} '
                            f'({len(labels)} classes).')
      elif names and names[0] != labels.names[index]:
        stats.errors.append(f'{where}: class index {index} is "{labels.names[index]}" in {labels.path} but the '
                            f'record says "{names[0]}": the set was made with another label map.')
      name = labels.names[index] if 0 <= index < len(labels) else str(index)
    else:
      name = names[0] if names else str(index)
  else:
    name = '(unlabeled)'
  counters['classes'][name] += 1
  height, width = _context_values(example, feature_keys.HEIGHT_KEY), _context_values(example, feature_keys.WIDTH_KEY)
  if height and width:
    counters['resolutions'][f'{height[0]}x{width[0]}'] += 1
  fps = _context_values(example, feature_keys.FPS_KEY)
  counters['fps'][f'{fps[0]:g}' if fps else 'unknown'] += 1
  return example


def _decode_check(where: str, example: tf.train.SequenceExample, stats: Stats) -> None:
  """Decodes every frame of one video and checks sizes agree with each other and with the stored size."""
  frames = example.feature_lists.feature_list[feature_keys.IMAGE_KEY].feature
  height, width = _context_values(example, feature_keys.HEIGHT_KEY), _context_values(example, feature_keys.WIDTH_KEY)
  shapes = set()
  for t, frame in enumerate(frames):
    try:
      image = tf.io.decode_image(frame.bytes_list.value[0], channels=3, expand_animations=False)
    except (tf.errors.InvalidArgumentError, IndexError) as e:
      stats.errors.append(f'{where}: frame {t} is not a decodable image ({_short_error(e)}).')
      return
    shapes.add(tuple(image.shape[:2]))
  if len(shapes) > 1:
    stats.errors.append(f'{where}: frames have different sizes {sorted(shapes)}.')
  elif height and width and shapes != {(height[0], width[0])}:
    stats.errors.append(f'{where}: frames are {shapes.pop()} but {feature_keys.HEIGHT_KEY}/{feature_keys.WIDTH_KEY} '
                        f'say {(height[0], width[0])}.')
  else:
    stats.decoded_videos += 1


_SHARD = re.compile(r'^(?P<prefix>.*)-(?P<index>\d{5})-of-(?P<count>\d{5})\.tfrecord$')


def missing_shards(files: Sequence[str]) -> List[str]:
  """One error per shard set `<prefix>-SSSSS-of-NNNNN.tfrecord` of `files` that lacks some of its N shards.

  A distributed conversion that lost a worker, or a copy that stopped half-way, leaves such a set: every present
  shard reads fine, and training would silently see part of the dataset. Shards absent from `files` but present
  on disk (a glob that selects part of a set on purpose) are not missing.
  """
  sets = collections.defaultdict(set)
  for path in files:
    match = _SHARD.match(path)
    if match:
      sets[(match['prefix'], int(match['count']))].add(int(match['index']))
  problems = []
  for (prefix, count), indices in sorted(sets.items()):
    missing = [i for i in range(count) if i not in indices and
               not tf.io.gfile.exists(f'{prefix}-{i:05d}-of-{count:05d}.tfrecord')]
    if missing:
      names = ', '.join(f'{i:05d}' for i in missing[:5]) + (', ...' if len(missing) > 5 else '')
      problems.append(f'{prefix}-*-of-{count:05d}.tfrecord: {len(missing)} of {count} shards are missing '
                      f'({names}). Re-run the same data_tools.convert command: it converts the missing shards only.')
  return problems


def verify(file_pattern: str, label_map_path: Optional[str] = None, num_decode: int = 4,
           seed: int = 0) -> Stats:
  """Reads every record of a TFRecord set and checks it.

  Args:
    file_pattern: a glob (or comma-separated globs) of TFRecord files.
    label_map_path: optional label map to check class indices and names against.
    num_decode: how many videos (sampled with `seed`) to fully JPEG-decode.
    seed: sampling seed.

  Returns:
    The statistics (with warnings).

  Raises:
    VerifyError: listing the errors (each naming its file and record) when the set is unusable.
  """
  files = sorted({f for pattern in file_pattern.split(',') for f in tf.io.gfile.glob(pattern.strip())})
  if not files:
    raise VerifyError(f'No files match {file_pattern!r}. Check the path (quote the glob so the shell keeps it).')
  labels = label_map_lib.read(label_map_path) if label_map_path else None
  stats = Stats(files=files)
  stats.errors.extend(missing_shards(files))
  counters = collections.defaultdict(collections.Counter)
  rng = random.Random(seed)
  sample = []  # Reservoir of (where, example) to decode.
  for path in files:
    count = 0
    try:
      for count, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator(), start=1):
        where = f'{path}, record {count - 1}'
        example = _check_record(where, raw, labels, stats, counters)
        if example is None:
          if len(stats.errors) >= _MAX_ERRORS:
            break
          continue
        stats.num_videos += 1
        if len(sample) < num_decode:
          sample.append((where, example))
        else:
          slot = rng.randrange(stats.num_videos)
          if slot < num_decode:
            sample[slot] = (where, example)
    except tf.errors.DataLossError as e:
      stats.errors.append(f'{path}: not a (complete) TFRecord file: {_short_error(e)} after {count} records. '
                          'Point --input at the .tfrecord shards, or re-run the conversion.')
    else:
      # TensorFlow's reader ends quietly at a partial record header; the header walk of training's check does not.
      _, problem = input_files.scan_tfrecord_file(path)
      if problem:
        stats.errors.append(f'{path} {problem}, after {count} complete records. Re-run the conversion (or the copy '
                            'that made the file).')
    if count == 0 and not any(e.startswith(path) for e in stats.errors):
      stats.warnings.append(f'{path}: empty (no records); every input of this shard may have failed conversion.')
    if len(stats.errors) >= _MAX_ERRORS:
      stats.errors.append(f'Stopped after {_MAX_ERRORS} errors.')
      break
  for where, example in sample:
    _decode_check(where, example, stats)
  stats.videos_per_class = dict(sorted(counters['classes'].items()))
  stats.resolutions = dict(counters['resolutions'].most_common())
  stats.fps = dict(counters['fps'].most_common())
  stats.missing_keys = dict(sorted(counters['missing'].items()))
  if labels is not None and stats.num_videos:
    absent = [n for n in labels.names if n not in stats.videos_per_class]
    if absent:
      stats.warnings.append(f'{len(absent)} classes of {labels.path} have no videos: {absent[:10]}')
  if not stats.num_videos and not stats.errors:
    stats.errors.append(f'{file_pattern}: the set holds no videos.')
  if stats.errors:
    raise VerifyError('\n'.join(stats.errors))
  return stats


def format_stats(stats: Stats, max_classes: int = 50) -> str:
  """A human-readable summary."""
  frames = stats.frames_per_video
  lines = [f'{len(stats.files)} files, {stats.num_videos} videos, {len(stats.videos_per_class)} classes']
  counts = list(stats.videos_per_class.items())
  if counts:
    values = [n for _, n in counts]
    lines.append(f'videos per class: min {min(values)}, max {max(values)}')
    lines += [f'  {name}: {n}' for name, n in counts[:max_classes]]
    if len(counts) > max_classes:
      lines.append(f'  ... {len(counts) - max_classes} more (see --json)')
  lines.append(f'frames per video: min {min(frames)}, mean {np.mean(frames):.1f}, max {max(frames)}')
  lines.append('resolution (HxW): ' + (', '.join(f'{k} ({v})' for k, v in stats.resolutions.items()) or 'unknown'))
  lines.append('fps: ' + ', '.join(f'{k} ({v})' for k, v in stats.fps.items()))
  lines.append(f'decode check: {stats.decoded_videos} sampled videos decoded, all frames OK')
  lines.append('missing optional keys: ' + (', '.join(f'{k} ({v})' for k, v in stats.missing_keys.items())
                                            or 'none'))
  lines += [f'warning: {w}' for w in stats.warnings]
  return '\n'.join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m data_tools.verify', description=__doc__.split('\n\n')[0])
  parser.add_argument('--input', required=True, help="Glob of TFRecord files, e.g. 'data/kinetics400/train-*.tfrecord'.")
  parser.add_argument('--label_map', help='Label map to check class indices and names against.')
  parser.add_argument('--num_decode', type=int, default=4, help='Videos to fully decode (sampled).')
  parser.add_argument('--seed', type=int, default=0, help='Seed of the decode sample.')
  parser.add_argument('--json', help='Also write the statistics as JSON to this file.')
  args = parser.parse_args(argv)
  try:
    stats = verify(args.input, args.label_map, args.num_decode, args.seed)
  except (VerifyError, FileNotFoundError, ValueError) as e:
    print(f'verify FAILED:\n{e}', file=sys.stderr)
    return 1
  print(format_stats(stats))
  if args.json:
    with tf.io.gfile.GFile(args.json, 'w') as f:
      json.dump(stats.to_json(), f, indent=2, sort_keys=True)
  return 0


if __name__ == '__main__':
  sys.exit(main())
