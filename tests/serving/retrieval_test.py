"""Tests of nearest-neighbour class agreement against a brute-force float64 reference and analytic chance."""
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.serving import retrieval


def _brute_force(queries, query_labels, database, database_labels, k, leave_one_out):
  """Loops over every pair; ranks by (-cosine similarity, index). Returns (precision@k, precision@1)."""
  hits_k, hits_1, count = 0, 0, 0
  for i, (query, label) in enumerate(zip(queries, query_labels)):
    if label < 0:
      continue
    scored = []
    for j, row in enumerate(database):
      if leave_one_out and i == j:
        continue
      cosine = float(np.dot(query, row) / (np.linalg.norm(query) * np.linalg.norm(row)))
      scored.append((-cosine, j))
    neighbours = [j for _, j in sorted(scored)[:k]]
    same = [database_labels[j] == label for j in neighbours]
    hits_k += sum(same) / k
    hits_1 += same[0]
    count += 1
  return hits_k / count, hits_1 / count


class RetrievalTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(1, 3, 7)
  def test_leave_one_out_matches_brute_force(self, k):
    rng = np.random.default_rng(k)
    embeddings = rng.normal(size=(30, 6))
    labels = rng.integers(-1, 4, size=30)  # Some unlabelled (-1) videos.
    result = retrieval.neighbour_class_agreement(embeddings, labels, k)
    precision_k, precision_1 = _brute_force(embeddings, labels, embeddings, labels, k, leave_one_out=True)
    self.assertEqual(result.num_queries, int(np.sum(labels >= 0)))
    self.assertAlmostEqual(result.precision_at_k, precision_k, places=12)
    self.assertAlmostEqual(result.precision_at_1, precision_1, places=12)

  def test_separate_database_matches_brute_force(self):
    rng = np.random.default_rng(11)
    queries, database = rng.normal(size=(9, 5)), rng.normal(size=(20, 5))
    query_labels, database_labels = rng.integers(0, 3, size=9), rng.integers(0, 3, size=20)
    result = retrieval.neighbour_class_agreement(queries, query_labels, 4, database, database_labels)
    precision_k, precision_1 = _brute_force(queries, query_labels, database, database_labels, 4,
                                            leave_one_out=False)
    self.assertAlmostEqual(result.precision_at_k, precision_k, places=12)
    self.assertAlmostEqual(result.precision_at_1, precision_1, places=12)
    expected_chance = np.mean([np.sum(database_labels == c) / 20 for c in query_labels])
    self.assertAlmostEqual(result.chance, expected_chance, places=12)

  def test_chance_and_perfect_clusters(self):
    # Classes of sizes 3, 2, 1 on three orthogonal directions with small noise: every neighbour of a video in a
    # class of size >= k + 1 shares it. Chance, leaving the query out: (3 * 2/5 + 2 * 1/5 + 1 * 0/5) / 6 = 4/15.
    labels = np.array([0, 0, 0, 1, 1, 2])
    directions = np.eye(3)[labels] + 0.01 * np.random.default_rng(0).normal(size=(6, 3))
    result = retrieval.neighbour_class_agreement(directions, labels, k=1)
    self.assertAlmostEqual(result.chance, 4 / 15, places=12)
    self.assertAlmostEqual(result.precision_at_1, 5 / 6, places=12)  # Only the singleton class misses.

  def test_nearest_neighbours_order_and_exclusion(self):
    database = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [1.0, 0.0]])
    neighbours = retrieval.nearest_neighbours(database[:1], database, k=3)
    self.assertEqual(neighbours.tolist(), [[0, 3, 1]])  # Ties go to the lower index.
    excluded = retrieval.nearest_neighbours(database[:1], database, k=3, exclude=np.array([0]))
    self.assertEqual(excluded.tolist(), [[3, 1, 2]])

  def test_errors(self):
    embeddings = np.eye(3)
    with self.assertRaisesRegex(ValueError, r'k=3 must be between 1 and the 2 candidate'):
      retrieval.neighbour_class_agreement(embeddings, np.array([0, 1, 0]), 3)
    with self.assertRaisesRegex(ValueError, r'No query has a class label'):
      retrieval.neighbour_class_agreement(embeddings, np.array([-1, -1, -1]), 1)
    path = os.path.join(self.get_temp_dir(), 'e.npz')
    np.savez(path, features=embeddings, labels=np.array([0, 1, 0]))
    loaded, labels = retrieval.load_embeddings(path, 'features')
    self.assertAllEqual(loaded, embeddings)
    self.assertAllEqual(labels, [0, 1, 0])
    with self.assertRaisesRegex(ValueError, r'has no "normalized_features" array'):
      retrieval.load_embeddings(path)


if __name__ == '__main__':
  tf.test.main()
