r"""Nearest-neighbour retrieval on extracted embeddings: do a video's neighbours share its class?

A label-free check of a representation: embed labelled videos (`official_cvrl.extract_features`), take each
video's k nearest neighbours by cosine similarity, and count how many have the video's class. Chance is the
fraction a random neighbour would give: for class c, (n_c - 1) / (N - 1) within one set (the query itself is
excluded), n_c / N against a separate database.

  python -m official_cvrl.serving.retrieval --embeddings=test_embeddings.npz --k=5
  python -m official_cvrl.serving.retrieval --embeddings=test_embeddings.npz --database=train_embeddings.npz

prints precision@k (the mean fraction of the k neighbours sharing the query's class), precision@1, and chance.
The standard retrieval protocol (R@k of test queries against the training set, per split) is
`python -m official_cvrl.evaluate_retrieval`.
"""
import dataclasses
import sys
from typing import Optional

from absl import app
from absl import flags
import numpy as np

from official_cvrl.evaluation import retrieval as retrieval_lib

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class RetrievalResult:
  """Neighbour class agreement of one retrieval run.

  Attributes:
    k: neighbours per query.
    num_queries: labelled queries evaluated.
    precision_at_k: mean over queries of the fraction of their k neighbours with the query's class.
    precision_at_1: the same for the nearest neighbour only.
    chance: the expected precision of neighbours drawn at random.
  """
  k: int
  num_queries: int
  precision_at_k: float
  precision_at_1: float
  chance: float


def nearest_neighbours(queries: np.ndarray, database: np.ndarray, k: int,
                       exclude: Optional[np.ndarray] = None) -> np.ndarray:
  """Indices `[num_queries, k]` of each query's k most cosine-similar database rows, most similar first.

  The exact blockwise search of `official_cvrl.evaluation.retrieval` (memory bounded; ties to the lower index).

  Args:
    queries: `[Q, D]` embeddings.
    database: `[N, D]` embeddings.
    k: neighbours per query.
    exclude: optional int `[Q]`: the database row each query must not return (the query itself when the
      queries are database rows).

  Returns:
    int64 `[Q, k]` database indices.
  """
  indices, _ = retrieval_lib.top_k_neighbours(queries, database, k, exclude=exclude, normalize=True)
  return indices


def neighbour_class_agreement(embeddings: np.ndarray, labels: np.ndarray, k: int,
                              database_embeddings: Optional[np.ndarray] = None,
                              database_labels: Optional[np.ndarray] = None) -> RetrievalResult:
  """Measures how often the k nearest neighbours of a video share its class.

  Args:
    embeddings: `[Q, D]` query embeddings.
    labels: int `[Q]` query classes; queries labelled < 0 (unknown) are skipped.
    k: neighbours per query.
    database_embeddings: optional `[N, D]` database; None searches the queries themselves, leaving each query
      out of its own neighbours.
    database_labels: int `[N]` classes of the database (required with `database_embeddings`).

  Returns:
    The `RetrievalResult`.

  Raises:
    ValueError: on mismatched shapes, too few videos for k, or no labelled query.
  """
  labels = np.asarray(labels)
  exclude_self = database_embeddings is None
  if exclude_self:
    database_embeddings, database_labels = embeddings, labels
  elif database_labels is None:
    raise ValueError('database_labels is required with database_embeddings.')
  database_labels = np.asarray(database_labels)
  if len(embeddings) != len(labels) or len(database_embeddings) != len(database_labels):
    raise ValueError(f'{len(embeddings)} query embeddings vs {len(labels)} labels, {len(database_embeddings)} '
                     f'database embeddings vs {len(database_labels)} labels.')
  available = len(database_embeddings) - (1 if exclude_self else 0)
  if not 1 <= k <= available:
    raise ValueError(f'k={k} must be between 1 and the {available} candidate neighbours per query.')
  labelled = labels >= 0
  if not labelled.any():
    raise ValueError('No query has a class label (all labels < 0): retrieval agreement needs labelled videos, '
                     'e.g. extract_features --input_format=class_folders or labelled TFRecords.')
  queries = np.flatnonzero(labelled)
  neighbours = nearest_neighbours(np.asarray(embeddings)[queries], database_embeddings, k,
                                  exclude=queries if exclude_self else None)
  same = database_labels[neighbours] == labels[queries][:, np.newaxis]
  class_counts = {c: int(np.sum(database_labels == c)) for c in np.unique(labels[queries])}
  if exclude_self:
    chance = np.mean([(class_counts[c] - 1) / available for c in labels[queries]])
  else:
    chance = np.mean([class_counts[c] / available for c in labels[queries]])
  return RetrievalResult(k=k, num_queries=len(queries), precision_at_k=float(same.mean()),
                         precision_at_1=float(same[:, 0].mean()), chance=float(chance))


def load_embeddings(path: str, key: str = 'normalized_features'):
  """Reads (embeddings `[N, D]`, labels `[N]`) from an .npz written by `extract_features`.

  Raises:
    ValueError: when the file lacks the arrays.
  """
  with np.load(path) as data:
    for name in (key, 'labels'):
      if name not in data:
        raise ValueError(f'{path} has no "{name}" array (it has {sorted(data.files)}); write it with '
                         '`python -m official_cvrl.extract_features` or pick an array with --key.')
    return data[key], data['labels']


def define_flags() -> None:
  """Defines the command-line flags (called only when run as a script)."""
  flags.DEFINE_string('embeddings', None, 'Query embeddings: an .npz written by extract_features.')
  flags.DEFINE_string(
      'database', None, 'Optional database .npz searched for neighbours; default: the queries themselves '
      '(leave-one-out).')
  flags.DEFINE_integer('k', 5, 'Neighbours per query.')
  flags.DEFINE_string('key', 'normalized_features', 'Which embedding of the .npz to compare.')
  flags.mark_flag_as_required('embeddings')


def main(_):
  try:
    embeddings, labels = load_embeddings(FLAGS.embeddings, FLAGS.key)
    database, database_labels = None, None
    if FLAGS.database:
      database, database_labels = load_embeddings(FLAGS.database, FLAGS.key)
    result = neighbour_class_agreement(embeddings, labels, FLAGS.k, database, database_labels)
  except (ValueError, OSError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  against = FLAGS.database or 'the other queries (leave-one-out)'
  print(f'{result.num_queries} queries, neighbours from {against}, cosine similarity of "{FLAGS.key}":')
  print(f'  precision@{result.k}: {result.precision_at_k:.3f}   precision@1: {result.precision_at_1:.3f}   '
        f'chance: {result.chance:.3f}   ({result.precision_at_k / max(result.chance, 1e-12):.1f}x chance)')


if __name__ == '__main__':
  define_flags()
  app.run(main)
