"""Tests of the blockwise exact retrieval against a brute-force float64 NumPy reference (full similarity matrix,
stable sort), with ties, k larger than the gallery, self-exclusion and a 10k x 10k run in bounded memory."""
import tracemalloc

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.evaluation import retrieval


def brute_force_neighbours(queries, gallery, k, normalize=True, exclude=None):
  queries, gallery = np.asarray(queries, np.float64), np.asarray(gallery, np.float64)
  if normalize:
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    gallery = gallery / np.linalg.norm(gallery, axis=1, keepdims=True)
  similarities = queries @ gallery.T
  if exclude is not None:
    similarities[np.arange(len(queries)), exclude] = -np.inf
    k = min(k, len(gallery) - 1)
  return np.argsort(-similarities, axis=1, kind='stable')[:, :k]


def brute_force_recall(query_labels, gallery_labels, neighbours, k):
  return np.mean([query_labels[i] in set(gallery_labels[neighbours[i, :k]]) for i in range(len(query_labels))])


class RetrievalTest(parameterized.TestCase, tf.test.TestCase):

  @parameterized.parameters((1, 7, 5), (5, 3, 4), (13, 1000, 1000), (40, 6, 9), (100, 7, 5))
  def test_neighbours_match_brute_force(self, k, query_block, gallery_block):
    rng = np.random.default_rng(k)
    queries, gallery = rng.normal(size=[23, 6]), rng.normal(size=[37, 6])
    indices, similarities = retrieval.top_k_neighbours(queries, gallery, k, normalize=True,
                                                       query_block=query_block, gallery_block=gallery_block)
    expected = brute_force_neighbours(queries, gallery, k)
    self.assertAllEqual(indices, expected)  # k=40, 100 > 37: every gallery row, ranked.
    unit = lambda x: x / np.linalg.norm(x, axis=1, keepdims=True)
    self.assertAllClose(similarities, np.take_along_axis(unit(queries) @ unit(gallery).T, expected, axis=1),
                        rtol=1e-12, atol=1e-12)

  @parameterized.parameters((1, 2, 3), (4, 5, 2), (9, 64, 64), (30, 3, 7))
  def test_ties_go_to_the_lower_gallery_index_whatever_the_blocks(self, k, query_block, gallery_block):
    # Small integer vectors: every inner product is an exact integer, so ties are exact and frequent.
    rng = np.random.default_rng(0)
    queries = rng.integers(-1, 2, [17, 3]).astype(np.float64)
    gallery = rng.integers(-1, 2, [25, 3]).astype(np.float64)
    gallery[10:15] = gallery[3]  # Duplicated rows, straddling the blocks.
    indices, _ = retrieval.top_k_neighbours(queries, gallery, k, query_block=query_block,
                                            gallery_block=gallery_block)
    self.assertAllEqual(indices, brute_force_neighbours(queries, gallery, k, normalize=False))

  def test_exclude_removes_each_querys_own_row(self):
    rng = np.random.default_rng(3)
    gallery = rng.normal(size=[12, 4])
    exclude = np.arange(12)
    indices, _ = retrieval.top_k_neighbours(gallery, gallery, 20, exclude=exclude, normalize=True, query_block=5,
                                            gallery_block=4)
    self.assertEqual(indices.shape, (12, 11))
    self.assertAllEqual(indices, brute_force_neighbours(gallery, gallery, 20, exclude=exclude))

  def test_recall_matches_the_definition_including_k_above_the_gallery(self):
    rng = np.random.default_rng(4)
    queries, gallery = rng.normal(size=[40, 5]), rng.normal(size=[30, 5])
    query_labels, gallery_labels = rng.integers(0, 6, 40), rng.integers(0, 5, 30)  # Class 5: no gallery video.
    ks = (1, 5, 10, 20, 50)
    recall = retrieval.retrieval_recall(queries, query_labels, gallery, gallery_labels, ks, query_block=7,
                                        gallery_block=8)
    neighbours = brute_force_neighbours(queries, gallery, 50)
    for k in ks:
      self.assertAlmostEqual(recall[k], brute_force_recall(query_labels, gallery_labels, neighbours, k), places=12)
    # k=50 > 30 gallery videos: a query counts exactly when its class is in the gallery.
    self.assertAlmostEqual(recall[50], np.mean(np.isin(query_labels, gallery_labels)), places=12)
    self.assertEqual(list(recall), list(ks))
    self.assertTrue(all(recall[a] <= recall[b] for a, b in zip(ks, ks[1:])))

  def test_exact_hand_computed_recall(self):
    # Query 0 is nearest to gallery 1 (class 1 != 0) then gallery 0 (class 0): R@1 misses, R@2 hits.
    queries = np.array([[1.0, 0.1], [0.0, 1.0]])
    gallery = np.array([[1.0, -0.5], [1.0, 0.2], [0.1, 1.0]])
    recall = retrieval.retrieval_recall(queries, [0, 2], gallery, [0, 1, 2], ks=(1, 2))
    self.assertEqual(recall, {1: 0.5, 2: 1.0})

  def test_ten_thousand_by_ten_thousand_in_bounded_memory(self):
    rng = np.random.default_rng(5)
    queries = rng.normal(size=[10000, 8]).astype(np.float32)
    gallery = rng.normal(size=[10000, 8]).astype(np.float32)
    tracemalloc.start()
    indices, _ = retrieval.top_k_neighbours(queries, gallery, 50, normalize=True)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    full_matrix = 10000 * 10000 * 8
    self.assertLess(peak, full_matrix / 2)
    sample = rng.choice(10000, 200, replace=False)
    self.assertAllEqual(indices[sample], brute_force_neighbours(queries[sample], gallery, 50))

  def test_bad_inputs(self):
    with self.assertRaisesRegex(ValueError, 'k must be >= 1'):
      retrieval.top_k_neighbours(np.ones([2, 3]), np.ones([2, 3]), 0)
    with self.assertRaisesRegex(ValueError, 'same D'):
      retrieval.top_k_neighbours(np.ones([2, 3]), np.ones([2, 4]), 1)
    with self.assertRaisesRegex(ValueError, 'labels are < 0'):
      retrieval.retrieval_recall(np.ones([2, 3]), [0, -1], np.ones([2, 3]), [0, 1])
    with self.assertRaisesRegex(ValueError, '3 query features vs 2 labels'):
      retrieval.retrieval_recall(np.ones([3, 3]), [0, 1], np.ones([2, 3]), [0, 1])


if __name__ == '__main__':
  tf.test.main()
