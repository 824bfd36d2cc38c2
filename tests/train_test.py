"""The training driver as a user runs it: resumption after SIGKILL, and one-line errors for bad input."""
import os
import signal
import subprocess
import sys
import time

import tensorflow as tf

from tests import fake_records

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tiny_overrides(train_path: str, train_steps: int) -> str:
  """cvrl_pretrain_demo at [4, 32, 32, 3], batch 2, checkpoints every 2 steps."""
  return ','.join([
      f'task.train_data.input_path={train_path}',
      f'task.validation_data.input_path={train_path}',
      'task.train_data.feature_shape=[4,32,32,3]', 'task.validation_data.feature_shape=[4,32,32,3]',
      'task.train_data.global_batch_size=2', 'task.validation_data.global_batch_size=2',
      'task.train_data.shuffle_buffer_size=4',
      'task.model.projection_head.hidden_dim=32', 'task.model.projection_head.output_dim=8',
      f'trainer.train_steps={train_steps}', 'trainer.steps_per_loop=2', 'trainer.checkpoint_interval=2',
      'trainer.summary_interval=2', 'trainer.validation_steps=1', f'trainer.validation_interval={train_steps}',
      'trainer.optimizer_config.warmup.linear.warmup_steps=0',
      'trainer.optimizer_config.learning_rate.cosine.offset=0',
      f'trainer.optimizer_config.learning_rate.cosine.decay_steps={train_steps}',
  ])


def _command(model_dir: str, overrides: str, *extra: str):
  return [sys.executable, '-m', 'official_cvrl.train', '--experiment=cvrl_pretrain_demo', '--mode=train',
          f'--model_dir={model_dir}', f'--params_override={overrides}', '--enable_async_checkpointing=false',
          *extra]


def _run(command, timeout=300):
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run(command, cwd=_REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _checkpoint_step(model_dir: str) -> int:
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


class TrainDriverTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.train_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train.tfrecord'), 6)

  def test_resumes_after_sigkill(self):
    model_dir = os.path.join(self.get_temp_dir(), 'killed')
    train_steps = 400
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2')
    process = subprocess.Popen(_command(model_dir, _tiny_overrides(self.train_path, train_steps)), cwd=_REPO,
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while _checkpoint_step(model_dir) < 4 and time.time() < deadline and process.poll() is None:
      time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait()
    killed_at = _checkpoint_step(model_dir)
    self.assertBetween(killed_at, 4, train_steps - 1, 'the run should be killed mid-way, after a checkpoint')

    # Resume with a short target so the test stays fast: it must continue from the checkpoint, not step 0.
    target = killed_at + 4
    result = _run(_command(model_dir, _tiny_overrides(self.train_path, target)))
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertEqual(_checkpoint_step(model_dir), target)
    self.assertRegex(result.stderr, rf'(?s)train \| step:\s+{killed_at + 2}\b')
    self.assertNotRegex(result.stderr, r'train \| step:\s+2 \|')

  def test_unknown_config_key_is_one_clear_line(self):
    result = _run(_command(os.path.join(self.get_temp_dir(), 'bad_key'),
                           'task.losses.tempreature=0.2'))
    self.assertEqual(result.returncode, 2)
    self.assertIn('error: invalid experiment configuration', result.stderr)
    self.assertIn('tempreature', result.stderr)
    self.assertNotIn('Traceback', result.stderr)

  def test_missing_input_files_is_one_clear_line(self):
    overrides = _tiny_overrides(os.path.join(self.get_temp_dir(), 'missing-*'), 2)
    result = _run(_command(os.path.join(self.get_temp_dir(), 'missing'), overrides))
    self.assertEqual(result.returncode, 2)
    self.assertIn('task.train_data.input_path: no file matches', result.stderr)
    self.assertIn('data_tools.convert', result.stderr)
    self.assertNotIn('Traceback', result.stderr)

  def test_nan_loss_stops_with_explanation(self):
    # A temperature that underflows to zero makes every logit infinite, so the loss is NaN at step 1.
    overrides = _tiny_overrides(self.train_path, 4) + ',task.losses.temperature=1e-45'
    result = _run(_command(os.path.join(self.get_temp_dir(), 'nan'), overrides))
    self.assertEqual(result.returncode, 3, result.stderr[-3000:])
    self.assertIn('loss became NaN or Inf', result.stderr)


if __name__ == '__main__':
  tf.test.main()
