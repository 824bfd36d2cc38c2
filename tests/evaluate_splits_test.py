"""Tests of the three-split runner: which splits it trains, the commands, and the per-split + mean table."""
import json
import os

import tensorflow as tf

from official_cvrl import evaluate_splits

_EXPERIMENT = 'cvrl_finetune_ucf101'
_TRAIN_STEPS = 2
_OVERRIDE = f'trainer.train_steps={_TRAIN_STEPS}'


def _write_validation(model_dir, step, accuracy, top_5):
  writer = tf.summary.create_file_writer(os.path.join(model_dir, 'validation'))
  with writer.as_default():
    tf.summary.scalar('accuracy', accuracy, step=step)
    tf.summary.scalar('top_5_accuracy', top_5, step=step)
    tf.summary.scalar('validation_loss', 1.0, step=step)
  writer.close()


class EvaluateSplitsTest(tf.test.TestCase):

  def test_trains_unfinished_splits_and_reports_the_mean(self):
    root = self.get_temp_dir()
    _write_validation(os.path.join(root, 'split1'), _TRAIN_STEPS, 0.90, 0.99)  # Already finished.
    _write_validation(os.path.join(root, 'split2'), 1, 0.10, 0.20)  # Interrupted after one evaluation.
    commands = []
    final = {2: (0.80, 0.97), 3: (0.70, 0.95)}

    def fake_train(command):
      commands.append(command)
      model_dir = [a for a in command if a.startswith('--model_dir=')][0].split('=', 1)[1]
      override = [a for a in command if a.startswith('--config_file=')][-1].split('=', 1)[1]
      with open(override) as f:
        split = int(f.read().split('dataset_split:')[1])
      self.assertEqual(model_dir, os.path.join(root, f'split{split}'))
      _write_validation(model_dir, _TRAIN_STEPS, *final[split])
      return 0

    results = evaluate_splits.evaluate_splits(_EXPERIMENT, root, params_override=_OVERRIDE, run_fn=fake_train)
    self.assertLen(commands, 2)  # Split 1 was complete.
    self.assertIn('--mode=train_and_eval', commands[0])
    self.assertIn(f'--params_override={_OVERRIDE}', commands[0])
    self.assertIn('-m', commands[0])
    self.assertEqual([r.step for r in results], [_TRAIN_STEPS] * 3)
    self.assertAllClose([r.metrics['accuracy'] for r in results], [0.90, 0.80, 0.70])
    table = evaluate_splits.format_table(results, _TRAIN_STEPS)
    self.assertIn('  mean', table)
    self.assertIn('80.00', table.splitlines()[-1])  # (90 + 80 + 70) / 3.
    self.assertIn('97.00', table.splitlines()[-1])  # (99 + 97 + 95) / 3.
    with open(evaluate_splits.write_results(results, root)) as f:
      saved = json.load(f)
    self.assertAllClose(saved['mean']['accuracy'], 0.8)
    self.assertEqual(saved['num_splits_finished'], 3)

  def test_skip_training_collects_partial_results(self):
    root = self.get_temp_dir()
    _write_validation(os.path.join(root, 'split1'), 1, 0.5, 0.75)

    def must_not_train(command):
      raise AssertionError(f'unexpected training: {command}')

    results = evaluate_splits.evaluate_splits(_EXPERIMENT, root, params_override=_OVERRIDE, splits=[1, 3],
                                              train=False, run_fn=must_not_train)
    self.assertEqual(results[0].step, 1)
    self.assertIsNone(results[1].step)
    table = evaluate_splits.format_table(results, _TRAIN_STEPS)
    self.assertIn('unfinished: step 1 of 2', table)
    self.assertIn('no evaluation yet', table)
    self.assertIn('mean of 1', table)

  def test_failed_split_is_reported(self):
    with self.assertRaisesRegex(ValueError, 'training split 1 failed'):
      evaluate_splits.evaluate_splits(_EXPERIMENT, self.get_temp_dir(), params_override=_OVERRIDE, splits=[1],
                                      run_fn=lambda command: 1)

  def test_experiment_without_split_placeholder_is_rejected(self):
    with self.assertRaisesRegex(ValueError, r'dataset_split=1 would have no effect'):
      evaluate_splits.evaluate_splits('cvrl_linear_eval_demo', self.get_temp_dir(), run_fn=lambda command: 0)

  def test_dataset_split_override_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'must not set task.dataset_split'):
      evaluate_splits.evaluate_splits(_EXPERIMENT, self.get_temp_dir(), params_override='task.dataset_split=2')


if __name__ == '__main__':
  tf.test.main()
