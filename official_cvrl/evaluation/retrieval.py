"""Exact nearest-neighbour video retrieval and its top-k recall, computed in blocks on the CPU.

The retrieval protocol of self-supervised video learning: each test video (a query, its clip-averaged
L2-normalised backbone features) looks up its k most cosine-similar training videos (the gallery); R@k is the
fraction of queries with at least one of them in the query's class. No training, no labels in the features:
the representation alone decides.

Neighbours are exact. Similarities are computed in float64, `query_block` queries against `gallery_block`
gallery rows at a time, keeping a running top-k per query, so memory is bounded by the block sizes whatever the
set sizes (a 10k x 10k search holds at most 1024 x 8192 similarities at once) and a similarity matrix is never
materialised. Ties are broken towards the lower gallery index, the order of a stable sort, so the result does not
depend on the blocking. Pure NumPy: no TensorFlow, no configs.
"""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

DEFAULT_KS = (1, 5, 10, 20, 50)
QUERY_BLOCK = 1024
GALLERY_BLOCK = 8192


def l2_normalize(features: np.ndarray) -> np.ndarray:
  """Rows divided by their L2 norm (zero rows stay zero), in float64."""
  features = np.asarray(features, np.float64)
  return features / np.maximum(np.linalg.norm(features, axis=1, keepdims=True), 1e-12)


def _select_top(similarities: np.ndarray, indices: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """Per row, the k largest similarities, ties to the lower index, sorted best first.

  Args:
    similarities: float64 `[rows, m]`.
    indices: int64 `[rows, m]` gallery index of each similarity.
    k: how many to keep (<= m).

  Returns:
    (similarities `[rows, k]`, indices `[rows, k]`).
  """
  # lexsort sorts by the last key first: descending similarity, then ascending index.
  order = np.lexsort((indices, -similarities), axis=1)[:, :k]
  return np.take_along_axis(similarities, order, axis=1), np.take_along_axis(indices, order, axis=1)


def _block_top(similarities: np.ndarray, indices: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
  """The k best columns of each row of one block (unsorted), ties at the k-th value to the lower index.

  Linear time: the k-th largest value by partition, then every column above it plus the first (lowest-index:
  a block's indices ascend along its columns) columns equal to it until k are kept.
  """
  threshold = -np.partition(-similarities, k - 1, axis=1)[:, k - 1:k]
  above = similarities > threshold
  tied = similarities == threshold
  needed = k - above.sum(axis=1, keepdims=True)
  keep = above | (tied & (np.cumsum(tied, axis=1) <= needed))
  _, columns = np.nonzero(keep)  # Row-major: exactly k columns per row, in column order.
  columns = columns.reshape(len(similarities), k)
  return np.take_along_axis(similarities, columns, axis=1), np.take_along_axis(indices, columns, axis=1)


def top_k_neighbours(queries: np.ndarray,
                     gallery: np.ndarray,
                     k: int,
                     exclude: Optional[np.ndarray] = None,
                     normalize: bool = False,
                     query_block: int = QUERY_BLOCK,
                     gallery_block: int = GALLERY_BLOCK) -> Tuple[np.ndarray, np.ndarray]:
  """Each query's k largest inner products with the gallery rows, exactly, in blocks.

  Args:
    queries: `[Q, D]`.
    gallery: `[N, D]`.
    k: neighbours per query, >= 1; more than the candidates returns them all.
    exclude: optional int `[Q]`: a gallery index each query must not return (the query itself when the queries
      are gallery rows); negative entries exclude nothing.
    normalize: whether to L2-normalise the rows (block by block, in float64) first: cosine similarity.
    query_block: queries per block.
    gallery_block: gallery rows per block.

  Returns:
    (indices int64 `[Q, k']`, similarities float64 `[Q, k']`), best first, k' = min(k, candidates per query).

  Raises:
    ValueError: on k < 1, mismatched feature dimensions or an empty gallery.
  """
  queries, gallery = np.asarray(queries), np.asarray(gallery)
  if k < 1:
    raise ValueError(f'k must be >= 1, got {k}.')
  if queries.ndim != 2 or gallery.ndim != 2 or queries.shape[1] != gallery.shape[1]:
    raise ValueError(f'queries {queries.shape} and gallery {gallery.shape} must be [rows, D] with the same D.')
  if not len(gallery):
    raise ValueError('The gallery is empty.')
  candidates = len(gallery) - (1 if exclude is not None and np.any(np.asarray(exclude) >= 0) else 0)
  k = min(k, max(candidates, 1))
  out_indices = np.empty([len(queries), k], np.int64)
  out_similarities = np.empty([len(queries), k], np.float64)
  for q_begin in range(0, len(queries), query_block):
    block = np.asarray(queries[q_begin:q_begin + query_block], np.float64)
    block = l2_normalize(block) if normalize else block
    best_sim = np.empty([len(block), 0], np.float64)
    best_idx = np.empty([len(block), 0], np.int64)
    for g_begin in range(0, len(gallery), gallery_block):
      rows = np.asarray(gallery[g_begin:g_begin + gallery_block], np.float64)
      rows = l2_normalize(rows) if normalize else rows
      similarities = block @ rows.T
      indices = np.broadcast_to(np.arange(g_begin, g_begin + len(rows), dtype=np.int64), similarities.shape)
      if exclude is not None:
        excluded = np.asarray(exclude)[q_begin:q_begin + query_block, np.newaxis] == indices
        similarities = np.where(excluded, -np.inf, similarities)
      if similarities.shape[1] > k:
        similarities, indices = _block_top(similarities, indices, k)
      merged_sim = np.concatenate([best_sim, similarities], axis=1)
      best_sim, best_idx = _select_top(merged_sim, np.concatenate([best_idx, indices], axis=1),
                                       min(k, merged_sim.shape[1]))
    out_indices[q_begin:q_begin + len(block)] = best_idx[:, :k]
    out_similarities[q_begin:q_begin + len(block)] = best_sim[:, :k]
  return out_indices, out_similarities


def recall_at_k(query_labels: np.ndarray, neighbour_labels: np.ndarray,
                ks: Sequence[int] = DEFAULT_KS) -> Dict[int, float]:
  """R@k: the fraction of queries with at least one of their k nearest neighbours in their class.

  Args:
    query_labels: int `[Q]`.
    neighbour_labels: int `[Q, K]`, the classes of each query's neighbours, best first.
    ks: the k values; a k above K uses all K neighbours (every gallery video when K is the gallery size).

  Returns:
    {k: recall in [0, 1]}.
  """
  query_labels = np.asarray(query_labels)
  hits = np.asarray(neighbour_labels) == query_labels[:, np.newaxis]
  first_hit = np.where(hits.any(axis=1), hits.argmax(axis=1), np.iinfo(np.int64).max)
  return {int(k): float(np.mean(first_hit < k)) for k in ks}


def retrieval_recall(query_features: np.ndarray, query_labels: np.ndarray, gallery_features: np.ndarray,
                     gallery_labels: np.ndarray, ks: Sequence[int] = DEFAULT_KS,
                     query_block: int = QUERY_BLOCK, gallery_block: int = GALLERY_BLOCK) -> Dict[int, float]:
  """R@k of test videos (queries) against training videos (gallery) by cosine similarity of their features.

  Args:
    query_features: `[Q, D]` (normalised here).
    query_labels: int `[Q]`, all >= 0.
    gallery_features: `[N, D]` (normalised here).
    gallery_labels: int `[N]`.
    ks: the k values.
    query_block: queries per block.
    gallery_block: gallery rows per block.

  Returns:
    {k: recall}.

  Raises:
    ValueError: on mismatched lengths, unlabelled videos or an empty set.
  """
  query_labels, gallery_labels = np.asarray(query_labels), np.asarray(gallery_labels)
  if len(query_features) != len(query_labels) or len(gallery_features) != len(gallery_labels):
    raise ValueError(f'{len(query_features)} query features vs {len(query_labels)} labels, '
                     f'{len(gallery_features)} gallery features vs {len(gallery_labels)} labels.')
  if not len(query_labels):
    raise ValueError('There are no queries.')
  if np.any(query_labels < 0) or np.any(gallery_labels < 0):
    raise ValueError('Retrieval recall needs a class for every video; some labels are < 0 (unknown).')
  neighbours, _ = top_k_neighbours(query_features, gallery_features, max(ks), normalize=True,
                                   query_block=query_block, gallery_block=gallery_block)
  return recall_at_k(query_labels, gallery_labels[neighbours], ks)
