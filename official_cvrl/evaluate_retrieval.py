r"""Video retrieval (R@1, 5, 10, 20, 50) of an exported backbone on UCF-101 / HMDB-51, per split and mean.

  python -m official_cvrl.evaluate_retrieval --saved_model_dir=exports/r3d_1x_k400_800ep \
      --train_input='gs://YOUR_BUCKET/ucf101_split{split}/train-*' \
      --test_input='gs://YOUR_BUCKET/ucf101_split{split}/test-*' \
      --splits=1,2,3 --output_dir=retrieval/ucf101

The protocol: every test video is a query; its features are the backbone's pooled features averaged over
`--num_clips` evenly spaced clips (x `--num_crops` crops) and L2-normalised (`normalized_features` of the export);
its neighbours are the training videos ranked by cosine similarity, found exactly
(`official_cvrl.evaluation.retrieval`, in blocks on the CPU); R@k is the fraction of queries with a video of
their class among their k nearest neighbours.

Features come from `official_cvrl.extract_features` (the same SavedModel signature and sampling) and are kept in
`<output_dir>/split<N>/{train,test}.npz`; files already there are reused, so a rerun only recomputes the recall
and an interrupted run resumes. An input ending in `.npz` is read as already extracted features. `{split}` in the
inputs is replaced by each of `--splits` (leave `--splits` empty for a dataset without splits). The table is
printed and written to `<output_dir>/retrieval_results.json`.
"""
import dataclasses
import json
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from official_cvrl import extract_features
from official_cvrl.evaluation import retrieval
from official_cvrl.serving import export_module
from official_cvrl.utils import errors
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS

RESULTS_FILE = 'retrieval_results.json'
SPLIT_PLACEHOLDER = '{split}'


@dataclasses.dataclass
class SplitRecall:
  """Retrieval result of one split.

  Attributes:
    split: the official split number, or None without splits.
    num_queries: test videos.
    num_gallery: training videos.
    recall: {k: R@k}.
  """
  split: Optional[int]
  num_queries: int
  num_gallery: int
  recall: Dict[int, float]


def parse_splits(value: str) -> List[Optional[int]]:
  """'1,2,3' -> [1, 2, 3]; '' -> [None] (one run without splits).

  Raises:
    UserInputError: on a non-integer entry.
  """
  if not value.strip():
    return [None]
  try:
    return [int(part) for part in value.split(',') if part.strip()]
  except ValueError:
    raise errors.UserInputError(f'--splits={value!r} must be comma-separated integers such as 1,2,3.') from None


def _split_path(path: str, split: Optional[int], flag: str) -> str:
  if split is None:
    if SPLIT_PLACEHOLDER in path:
      raise errors.UserInputError(f'{flag}={path} contains {SPLIT_PLACEHOLDER} but --splits is empty.')
    return path
  if SPLIT_PLACEHOLDER not in path and not path.endswith('.npz'):
    raise errors.UserInputError(f'{flag}={path} has no {SPLIT_PLACEHOLDER} placeholder, so every split would read '
                                'the same files; write e.g. .../ucf101_split{split}/train-*.')
  return path.replace(SPLIT_PLACEHOLDER, str(split))


def load_features(path: str, key: str = export_module.NORMALIZED_FEATURES) -> Tuple[np.ndarray, np.ndarray]:
  """(features `[N, D]`, labels `[N]`) of an .npz written by `extract_features`.

  Raises:
    UserInputError: when the file lacks the arrays or has unlabelled videos.
  """
  with tf.io.gfile.GFile(path, 'rb') as f, np.load(f) as data:
    missing = [name for name in (key, 'labels') if name not in data.files]
    if missing:
      raise errors.UserInputError(f'{path} has no {missing} array(s) (it has {sorted(data.files)}); write it with '
                                  '`python -m official_cvrl.extract_features`.')
    features, labels = data[key], data['labels']
  if np.any(labels < 0):
    raise errors.UserInputError(f'{path}: {int(np.sum(labels < 0))} of {len(labels)} videos have no class label; '
                                'retrieval recall needs labelled videos (labelled TFRecords or class folders).')
  return features, labels


def features_for(input_path: str, cache: str, saved_model_dir: Optional[str], input_format: str, num_clips: int,
                 num_crops: int, batch_size: int) -> Tuple[np.ndarray, np.ndarray]:
  """Features of one set: the .npz itself, the cached extraction, or a new extraction written to `cache`.

  Raises:
    UserInputError: when features must be extracted without --saved_model_dir, or nothing could be embedded.
  """
  if input_path.endswith('.npz'):
    return load_features(input_path)
  if not tf.io.gfile.exists(cache):
    if not saved_model_dir:
      raise errors.UserInputError(f'{input_path} needs feature extraction: set --saved_model_dir (an export of '
                                  'official_cvrl.serving.export_saved_model).')
    print(f'Extracting features of {input_path} -> {cache}', file=sys.stderr, flush=True)
    embedded = extract_features.run(saved_model_dir, input_path, cache, input_format=input_format,
                                    num_clips=num_clips, num_crops=num_crops, batch_size=batch_size,
                                    progress_interval=30.0)
    if not embedded:
      raise errors.UserInputError(f'no video of {input_path} could be embedded (see '
                                  f'{extract_features.failure_report_path(cache)}).')
  return load_features(cache)


def evaluate(train_input: str, test_input: str, output_dir: str, splits: Sequence[Optional[int]],
             saved_model_dir: Optional[str] = None, input_format: str = 'tfrecord', num_clips: int = 10,
             num_crops: int = 1, batch_size: int = 8,
             ks: Sequence[int] = retrieval.DEFAULT_KS) -> List[SplitRecall]:
  """R@k of every split (see the module docstring).

  Raises:
    UserInputError: on bad inputs.
  """
  if not ks or min(ks) < 1:
    raise errors.UserInputError(f'--ks must be positive integers, got {list(ks)}.')
  # Every path is checked before anything is written.
  inputs = [(split, _split_path(train_input, split, '--train_input'), _split_path(test_input, split, '--test_input'))
            for split in splits]
  results = []
  for split, split_train, split_test in inputs:
    folder = os.path.join(output_dir, 'all' if split is None else f'split{split}')  # extract_features makes it.
    gallery, gallery_labels = features_for(split_train, os.path.join(folder, 'train.npz'), saved_model_dir,
                                           input_format, num_clips, num_crops, batch_size)
    queries, query_labels = features_for(split_test, os.path.join(folder, 'test.npz'), saved_model_dir,
                                         input_format, num_clips, num_crops, batch_size)
    if queries.shape[1] != gallery.shape[1]:
      raise errors.UserInputError(f'split {split}: test features have {queries.shape[1]} dimensions, training '
                                  f'features {gallery.shape[1]}; extract both with the same SavedModel.')
    recall = retrieval.retrieval_recall(queries, query_labels, gallery, gallery_labels, ks)
    results.append(SplitRecall(split, len(queries), len(gallery), recall))
  return results


def mean_recall(results: Sequence[SplitRecall]) -> Dict[int, float]:
  return {k: float(np.mean([r.recall[k] for r in results])) for k in results[0].recall}


def format_table(results: Sequence[SplitRecall]) -> str:
  ks = list(results[0].recall)
  lines = ['| split | queries | gallery | ' + ' | '.join(f'R@{k}' for k in ks) + ' |',
           '|---|---|---|' + '---|' * len(ks)]
  for r in results:
    name = '-' if r.split is None else str(r.split)
    lines.append(f'| {name} | {r.num_queries} | {r.num_gallery} | ' +
                 ' | '.join(f'{100 * r.recall[k]:.1f}' for k in ks) + ' |')
  if len(results) > 1:
    mean = mean_recall(results)
    lines.append('| mean | | | ' + ' | '.join(f'{100 * mean[k]:.1f}' for k in ks) + ' |')
  return '\n'.join(lines)


def write_results(results: Sequence[SplitRecall], output_dir: str) -> str:
  """Writes `<output_dir>/retrieval_results.json` atomically; returns its path."""
  payload = {'splits': [{'split': r.split, 'num_queries': r.num_queries, 'num_gallery': r.num_gallery,
                         'recall': {str(k): v for k, v in r.recall.items()}} for r in results],
             'mean': {str(k): v for k, v in mean_recall(results).items()}}
  tf.io.gfile.makedirs(output_dir)
  path = os.path.join(output_dir, RESULTS_FILE)
  temporary = f'{path}.tmp-{os.getpid()}'
  with tf.io.gfile.GFile(temporary, 'w') as f:
    f.write(json.dumps(payload, indent=2) + '\n')
  tf.io.gfile.rename(temporary, path, overwrite=True)
  return path


def define_flags() -> None:
  """Defines the command-line flags (called only when run as a script, so importing this module is safe)."""
  flags.DEFINE_string('saved_model_dir', None, 'Export of official_cvrl.serving.export_saved_model whose '
                      'normalized_features are compared (not needed when every input is an .npz or cached).')
  flags.DEFINE_string('train_input', None, 'Gallery: training videos of each split, with {split} (TFRecord globs, '
                      'a class folder, or an extract_features .npz).')
  flags.DEFINE_string('test_input', None, 'Queries: test videos of each split, with {split}.')
  flags.DEFINE_string('output_dir', None, 'Where the features (split<N>/{train,test}.npz) and results go.')
  flags.DEFINE_string('splits', '1,2,3', 'Comma-separated split numbers replacing {split}; empty for no splits.')
  flags.DEFINE_enum('input_format', 'tfrecord', extract_features.INPUT_FORMATS, 'How to read the inputs.')
  flags.DEFINE_integer('num_clips', 10, 'Evenly spaced clips averaged into each video\'s features.')
  flags.DEFINE_integer('num_crops', 1, 'Spatial views per clip averaged too: 1 (centre) or 3.')
  flags.DEFINE_integer('batch_size', 8, 'Videos per model call.')
  flags.DEFINE_list('ks', [str(k) for k in retrieval.DEFAULT_KS], 'The k of R@k.')
  flags.mark_flags_as_required(['train_input', 'test_input', 'output_dir'])


def main(_):
  try:
    try:
      ks = [int(k) for k in FLAGS.ks]
    except ValueError:
      raise errors.UserInputError(f'--ks={",".join(FLAGS.ks)} must be integers such as 1,5,10,20,50.') from None
    results = evaluate(FLAGS.train_input, FLAGS.test_input, FLAGS.output_dir, parse_splits(FLAGS.splits),
                       FLAGS.saved_model_dir, FLAGS.input_format, FLAGS.num_clips, FLAGS.num_crops,
                       FLAGS.batch_size, ks)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
  path = write_results(results, FLAGS.output_dir)
  print(format_table(results), flush=True)
  print(f'Wrote {path}.', flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
