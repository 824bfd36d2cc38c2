"""Tests of the retrieval command: a real export + extraction on tiny records, per-split recall against a
brute-force NumPy reference, cached features reused, one clear error line for bad input."""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from official.core import task_factory
from official_cvrl import evaluate_retrieval
from official_cvrl import extract_features
from official_cvrl.serving import export_saved_model
from official_cvrl.utils import errors
from tests import fake_records

_EXPERIMENT = 'cvrl_pretrain_demo'
_OVERRIDE = 'task.train_data.feature_shape=[4,32,32,3],task.validation_data.feature_shape=[4,32,32,3]'


def brute_force_recall(queries, query_labels, gallery, gallery_labels, k):
  unit = lambda x: np.asarray(x, np.float64) / np.linalg.norm(x, axis=1, keepdims=True)
  order = np.argsort(-(unit(queries) @ unit(gallery).T), axis=1, kind='stable')[:, :k]
  return np.mean([query_labels[i] in gallery_labels[order[i]] for i in range(len(queries))])


def _write_npz(path, features, labels):
  extract_features.write_npz(path, [f'v{i}' for i in range(len(labels))], list(labels),
                             {'features': features, 'normalized_features': features}, None, 'model', 1)


class EvaluateRetrievalTest(tf.test.TestCase):

  def test_extracts_features_once_and_reports_recall(self):
    root = self.get_temp_dir()
    params = export_saved_model.load_experiment_config(_EXPERIMENT, None, _OVERRIDE)
    model = task_factory.get_task(params.task).build_model()
    tf.train.Checkpoint(model=model, **model.checkpoint_items).save(os.path.join(root, 'model_dir', 'ckpt'))
    saved_model = export_saved_model.run_export(_EXPERIMENT, os.path.join(root, 'model_dir'),
                                                os.path.join(root, 'export'), params_override=_OVERRIDE)
    train = fake_records.write_records(os.path.join(root, 'train.tfrecord'), 10, num_classes=3, seed=1)
    test = fake_records.write_records(os.path.join(root, 'test.tfrecord'), 5, num_classes=3, seed=2)
    output = os.path.join(root, 'retrieval')
    results = evaluate_retrieval.evaluate(train, test, output, [None], saved_model, num_clips=2, ks=(1, 5, 20))
    with np.load(os.path.join(output, 'all', 'train.npz')) as g, np.load(os.path.join(output, 'all', 'test.npz')) as q:
      self.assertEqual(g['normalized_features'].shape[0], 10)
      self.assertEqual(int(q['num_clips']), 2)
      for k in (1, 5, 20):  # 20 > 10 training videos: every class present, so R@20 = 1.
        self.assertAlmostEqual(results[0].recall[k], brute_force_recall(
            q['normalized_features'], q['labels'], g['normalized_features'], g['labels'], k))
    self.assertEqual(results[0].recall[20], 1.0)
    # A rerun reads the cached features: no SavedModel needed.
    again = evaluate_retrieval.evaluate(train, test, output, [None], saved_model_dir=None, ks=(1, 5, 20))
    self.assertEqual(again[0].recall, results[0].recall)

  def test_three_splits_mean_and_results_file(self):
    root = self.get_temp_dir()
    rng = np.random.default_rng(0)
    expected = {}
    for split in (1, 2, 3):
      gallery, queries = rng.normal(size=[30, 6]).astype(np.float32), rng.normal(size=[12, 6]).astype(np.float32)
      gallery_labels, query_labels = rng.integers(0, 4, 30), rng.integers(0, 4, 12)
      _write_npz(os.path.join(root, f'train{split}.npz'), gallery, gallery_labels)
      _write_npz(os.path.join(root, f'test{split}.npz'), queries, query_labels)
      expected[split] = {k: brute_force_recall(queries, query_labels, gallery, gallery_labels, k)
                         for k in (1, 5, 10, 20, 50)}
    output = os.path.join(root, 'out')
    results = evaluate_retrieval.evaluate(os.path.join(root, 'train{split}.npz'),
                                          os.path.join(root, 'test{split}.npz'), output, [1, 2, 3])
    for result in results:
      for k, value in expected[result.split].items():
        self.assertAlmostEqual(result.recall[k], value, places=12)
    path = evaluate_retrieval.write_results(results, output)
    with open(path) as f:
      payload = json.load(f)
    self.assertAlmostEqual(payload['mean']['5'], np.mean([expected[s][5] for s in (1, 2, 3)]), places=12)
    table = evaluate_retrieval.format_table(results)
    self.assertIn('| mean | | | ', table)
    self.assertIn(f'| 2 | 12 | 30 | {100 * expected[2][1]:.1f} |', table)

  def test_bad_inputs_give_one_error_line(self):
    root = self.get_temp_dir()
    with self.assertRaisesRegex(errors.UserInputError, r'has no \{split\} placeholder'):
      evaluate_retrieval.evaluate('data/train-*', 'data/test-*', root, [1])
    with self.assertRaisesRegex(errors.UserInputError, r'--splits=.*comma-separated integers'):
      evaluate_retrieval.parse_splits('1,a')
    _write_npz(os.path.join(root, 'unlabelled.npz'), np.ones([2, 3], np.float32), [0, -1])
    with self.assertRaisesRegex(errors.UserInputError, r'1 of 2 videos have no class label'):
      evaluate_retrieval.evaluate(os.path.join(root, 'unlabelled.npz'), os.path.join(root, 'unlabelled.npz'), root,
                                  [None])
    with self.assertRaisesRegex(errors.UserInputError, r'set --saved_model_dir'):
      evaluate_retrieval.evaluate('train-*', 'test-*', os.path.join(root, 'fresh'), [None])
    self.assertFalse(os.path.exists(os.path.join(root, 'fresh')))  # Nothing half-written.
    process = subprocess.run(
        [sys.executable, '-m', 'official_cvrl.evaluate_retrieval', '--train_input=a-*', '--test_input=b-*',
         f'--output_dir={root}', '--splits=1'], capture_output=True, text=True, check=False,
        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
    self.assertEqual(process.returncode, 2)
    self.assertEqual(process.stderr.strip().splitlines()[-1][:6], 'error:')
    self.assertNotIn('Traceback', process.stderr)


if __name__ == '__main__':
  tf.test.main()
