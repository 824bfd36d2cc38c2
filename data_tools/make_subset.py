r"""Makes class-balanced label-fraction subsets of a training set for semi-supervised learning.

  python -m data_tools.make_subset --input 'data/kinetics400/train-*.tfrecord' --fraction 0.01 --seed 0 \
      --output_dir data/kinetics400_train_1pct

CVRL's semi-supervised setting (paper Sec. 4.1) samples 1% and 10% of the videos of every class of the Kinetics
training set. Here each class with n videos keeps round(fraction * n) of them, and at least one, so every class is
represented. Which videos are kept depends only on the seed and the video ids (`clip/data_path`): videos are
ranked by a hash of (seed, id), never by file order or worker count, so a subset is reproducible anywhere.

Writes `<output_dir>/<prefix>-SSSSS-of-NNNNN.tfrecord` (the selected records, unchanged) and
`<output_dir>/<prefix>_video_ids.txt` (the selected ids, one a line, sorted) for readers that filter a full set.
"""

import argparse
import collections
import dataclasses
import math
import os
import sys
from typing import Dict, List, Mapping, Optional, Sequence, Set

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from google.protobuf import message as protobuf_message
import tensorflow as tf

from data_tools import shards
from official_cvrl.dataloaders import feature_keys
# pylint: enable=g-import-not-at-top,wrong-import-position


@dataclasses.dataclass
class SubsetResult:
  """What `make_subset` wrote.

  Attributes:
    selected: the selected video ids, sorted.
    per_class: class index -> (videos in the input, videos selected).
    shard_paths: the written shards.
    id_list_path: the file listing the selected ids.
  """
  selected: List[str]
  per_class: Dict[int, tuple]
  shard_paths: List[str]
  id_list_path: str


def per_class_count(num_videos: int, fraction: float) -> int:
  """Videos kept from a class of `num_videos`: fraction * n rounded half up, at least 1."""
  return min(num_videos, max(1, int(math.floor(fraction * num_videos + 0.5))))


def select_balanced(labels: Mapping[str, int], fraction: float, seed: int) -> Set[str]:
  """Chooses the subset.

  Args:
    labels: video id -> class index.
    fraction: share of each class to keep, in (0, 1].
    seed: selection seed.

  Returns:
    The selected ids: `per_class_count` of each class, those with the smallest hash of (seed, id).

  Raises:
    ValueError: on a fraction outside (0, 1].
  """
  if not 0 < fraction <= 1:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}.')
  by_class = collections.defaultdict(list)
  for video_id, label in labels.items():
    by_class[label].append(video_id)
  selected = set()
  for ids in by_class.values():
    ranked = sorted(ids, key=lambda i: (shards.stable_hash(f'{seed}:{i}'), i))
    selected.update(ranked[:per_class_count(len(ids), fraction)])
  return selected


def _context(raw: bytes, where: str) -> tuple:
  """(video id or '', class index) of one serialized SequenceExample."""
  try:
    example = tf.train.SequenceExample.FromString(raw)
  except protobuf_message.DecodeError as e:
    raise ValueError(f'{where} is not a tf.train.SequenceExample ({e}).') from None
  feature = example.context.feature
  video_id = feature[feature_keys.VIDEO_ID_KEY].bytes_list.value[0].decode('utf-8') if (
      feature_keys.VIDEO_ID_KEY in feature and feature[feature_keys.VIDEO_ID_KEY].bytes_list.value) else ''
  indices = feature[feature_keys.LABEL_INDEX_KEY].int64_list.value if feature_keys.LABEL_INDEX_KEY in feature else []
  if not indices or indices[0] == feature_keys.UNLABELED_INDEX:
    raise ValueError(f'{where} has no class index ({feature_keys.LABEL_INDEX_KEY}); label-fraction subsets need a '
                     'labelled training set.')
  return video_id, int(indices[0])


def _records(files: Sequence[str]):
  """Yields (position, 'file, record n', raw) over the files in order."""
  position = 0
  for path in files:
    for n, raw in enumerate(tf.data.TFRecordDataset(path).as_numpy_iterator()):
      yield position, f'{path}, record {n}', raw
      position += 1


def make_subset(file_pattern: str, output_dir: str, fraction: float, seed: int = 0, prefix: str = 'train',
                num_shards: int = 0) -> SubsetResult:
  """Writes a class-balanced subset of a TFRecord set.

  Args:
    file_pattern: glob of the full training set's shards.
    output_dir: where the subset's shards and id list go.
    fraction: share of each class to keep, in (0, 1].
    seed: selection seed.
    prefix: shard name prefix of the subset.
    num_shards: number of subset shards; 0 picks `shards.auto_num_shards`: about 100 videos per shard, but at
      least 16 shards (one per video below 16 videos) so that small subsets still spread over workers.

  Returns:
    The `SubsetResult`.

  Raises:
    FileNotFoundError: when no file matches.
    ValueError: on unlabelled records, duplicate ids or a bad fraction.
  """
  files = sorted(tf.io.gfile.glob(file_pattern))
  if not files:
    raise FileNotFoundError(f'No files match {file_pattern!r}.')
  if not 0 < fraction <= 1:
    raise ValueError(f'fraction must be in (0, 1], got {fraction}.')
  labels, ids_by_position = {}, []
  for position, where, raw in _records(files):
    video_id, label = _context(raw, where)
    video_id = video_id or f'record-{position}'  # Sets made elsewhere may lack ids; file order then names them.
    if video_id in labels:
      raise ValueError(f'{where}: video id {video_id!r} appears twice in {file_pattern}; ids must be unique.')
    labels[video_id] = label
    ids_by_position.append(video_id)
  selected = select_balanced(labels, fraction, seed)
  chosen = sorted(selected)
  num_shards = num_shards or shards.auto_num_shards(len(chosen))
  shard_of = {}
  for index, positions in enumerate(shards.assign_shards(chosen, num_shards)):
    for position in positions:
      shard_of[chosen[position]] = index
  tf.io.gfile.makedirs(output_dir)
  state = shards.state_dir(output_dir)
  shards.remove_temporaries(state, [f'{prefix}-', f'{prefix}_video_ids.'])
  paths = [os.path.join(output_dir, shards.shard_name(prefix, i, num_shards)) for i in range(num_shards)]
  writers = [shards.AtomicTFRecordWriter(path, state) for path in paths]
  try:
    for position, _, raw in _records(files):
      video_id = ids_by_position[position]
      if video_id in selected:
        writers[shard_of[video_id]].write(raw)
  except BaseException:
    for writer in writers:
      writer.abort()
    raise
  for writer in writers:
    writer.publish()
  id_list_path = os.path.join(output_dir, f'{prefix}_video_ids.txt')
  shards.write_text_atomically(id_list_path, ''.join(i + '\n' for i in chosen), state)
  totals = collections.Counter(labels.values())
  kept = collections.Counter(labels[i] for i in chosen)
  per_class = {label: (totals[label], kept[label]) for label in sorted(totals)}
  return SubsetResult(selected=chosen, per_class=per_class, shard_paths=paths, id_list_path=id_list_path)


def main(argv: Optional[Sequence[str]] = None) -> int:
  parser = argparse.ArgumentParser(prog='python -m data_tools.make_subset', description=__doc__.split('\n\n')[0])
  parser.add_argument('--input', required=True, help="Glob of the training set, e.g. 'data/kinetics400/train-*.tfrecord'.")
  parser.add_argument('--output_dir', required=True, help='Folder for the subset shards and id list.')
  parser.add_argument('--fraction', type=float, required=True, help='Share of each class, e.g. 0.01 or 0.1.')
  parser.add_argument('--seed', type=int, default=0, help='Selection seed.')
  parser.add_argument('--prefix', default='train', help='Shard name prefix of the subset.')
  parser.add_argument('--num_shards', type=int, default=0,
                      help='Subset shards; 0 picks about 100 videos per shard but at least 16 shards (one per video '
                      'below 16), e.g. 16 shards for 200 videos, 22 for 2156.')
  args = parser.parse_args(argv)
  try:
    result = make_subset(args.input, args.output_dir, args.fraction, args.seed, args.prefix, args.num_shards)
  except (FileNotFoundError, ValueError, tf.errors.OpError) as e:
    print(f'make_subset FAILED: {e}', file=sys.stderr)
    return 1
  total = sum(n for n, _ in result.per_class.values())
  kept = [k for _, k in result.per_class.values()]
  print(f'kept {len(result.selected)} of {total} videos ({100 * len(result.selected) / total:.2f}%) over '
        f'{len(result.per_class)} classes, {min(kept)}-{max(kept)} per class')
  print(f'shards: {os.path.join(args.output_dir, f"{args.prefix}-*-of-{len(result.shard_paths):05d}.tfrecord")}')
  print(f'video ids: {result.id_list_path}')
  return 0


if __name__ == '__main__':
  sys.exit(main())
