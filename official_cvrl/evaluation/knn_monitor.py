"""Weighted k-nearest-neighbour top-1 accuracy: a label-using monitor of self-supervised pretraining.

Following Wu et al. (CVPR 2018, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination"), each
labelled video votes with weight exp(cos / tau) for its class among the k most cosine-similar other videos of
the same set (leave-one-out), and the predicted class is the one with the largest total weight (ties: the lower
class index). No training: it only says how well the current features separate the classes, so it can be
logged at every evaluation of a pretraining run for the price of one feature pass.

It uses labels, so it is a monitor, not a self-supervised metric and not the paper's evaluation protocol: the
linear evaluation (and retrieval) on the frozen backbone is what the paper reports. Its level depends on k, tau
and on how many labelled videos there are; compare it only between checkpoints of one run or runs with the same
validation set. Pure NumPy; neighbours are exact (`evaluation.retrieval.top_k_neighbours`).
"""
import numpy as np

from official_cvrl.evaluation import retrieval


def weighted_knn_top1(features: np.ndarray, labels: np.ndarray, k: int = 20, temperature: float = 0.07) -> float:
  """Leave-one-out weighted kNN top-1 accuracy of `labels` from `features`.

  Args:
    features: `[N, D]` features of N videos (L2-normalised here, in float64).
    labels: int `[N]` class indices; negative entries (unlabelled) are ignored as queries and as neighbours.
    k: neighbours per query (fewer when the set is smaller).
    temperature: tau of the vote weights exp(cos / tau), > 0.

  Returns:
    The fraction of labelled videos whose vote gives their class; NaN with fewer than two labelled videos.

  Raises:
    ValueError: on k < 1, temperature <= 0 or mismatched shapes.
  """
  features = np.asarray(features)
  labels = np.asarray(labels).reshape(-1)
  if k < 1 or not temperature > 0:
    raise ValueError(f'k must be >= 1 and temperature > 0, got k={k}, temperature={temperature}.')
  if features.ndim != 2 or len(features) != len(labels):
    raise ValueError(f'features {features.shape} must be [N, D] with N = len(labels) = {len(labels)}.')
  labelled = labels >= 0
  features, labels = features[labelled], labels[labelled].astype(np.int64)
  if len(labels) < 2:
    return float('nan')
  indices, similarities = retrieval.top_k_neighbours(features, features, k, exclude=np.arange(len(labels)),
                                                     normalize=True)
  votes = np.zeros([len(labels), int(labels.max()) + 1])
  rows = np.repeat(np.arange(len(labels)), indices.shape[1])
  np.add.at(votes, (rows, labels[indices].reshape(-1)), np.exp(similarities / temperature).reshape(-1))
  return float(np.mean(np.argmax(votes, axis=1) == labels))
