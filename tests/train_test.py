"""The training driver as a user runs it: resumption after SIGKILL, one-line errors for bad input, the step
lines' metrics, and the README's "Extending a task" recipe run as written."""
import glob
import os
import re
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


def _user_env():
  """The environment of a user's shell: no TensorFlow log settings from the test session (conftest sets some)."""
  env = {k: v for k, v in os.environ.items() if k != 'TF_CPP_MIN_LOG_LEVEL'}
  env['PYTHONPATH'] = os.pathsep.join(p for p in (_REPO, os.environ.get('PYTHONPATH')) if p)
  return env


def _run(command, timeout=300, cwd=_REPO):
  return subprocess.run(command, cwd=cwd, env=_user_env(), capture_output=True, text=True, timeout=timeout)


def _readme_block(first_line: str) -> str:
  """The fenced code block of README.md whose first line is `first_line`."""
  with open(os.path.join(_REPO, 'README.md')) as f:
    readme = f.read()
  for block in re.findall(r'```[a-z]*\n(.*?)```', readme, flags=re.S):
    if block.startswith(first_line + '\n'):
      return block
  raise AssertionError(f'README.md has no code block starting with {first_line!r}')


def _summary_tags(log_dir: str) -> set:
  tags = set()
  for path in glob.glob(os.path.join(log_dir, 'events.out.tfevents.*')):
    for record in tf.data.TFRecordDataset(path):
      tags.update(value.tag for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value)
  return tags


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
    process = subprocess.Popen(_command(model_dir, _tiny_overrides(self.train_path, train_steps)), cwd=_REPO,
                               env=_user_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
    # The step line itself carries the logged metrics (it used to end in a bare `output:`).
    self.assertRegex(result.stdout, rf'(?m)^train \| step:\s+{target} \| steps/sec:.*\| output: .*'
                                    r'contrastive_loss=[-0-9.e]+.*learning_rate=[-0-9.e]+.*training_loss=')
    if not tf.config.list_physical_devices('GPU'):
      self.assertNotIn('failed call to cuInit', result.stderr)

  def _assert_one_error_line(self, result, *fragments):
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    self.assertNotIn('Traceback', result.stderr)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error:')]
    self.assertLen(error_lines, 1, result.stderr[-3000:])
    for fragment in fragments:
      self.assertIn(fragment, error_lines[0])

  def test_unknown_config_key_is_one_clear_line(self):
    result = _run(_command(os.path.join(self.get_temp_dir(), 'bad_key'), 'task.losses.tempreature=0.2'))
    self._assert_one_error_line(result, 'error: --params_override: unknown key task.losses.tempreature')

  def test_pretrain_task_check_fails_before_anything_is_built(self):
    model_dir = os.path.join(self.get_temp_dir(), 'bad_temperature')
    result = _run(_command(model_dir, 'task.losses.temperature=0'))
    self._assert_one_error_line(result, 'task.losses.temperature must be > 0')
    self.assertFalse(os.path.exists(os.path.join(model_dir, 'params.yaml')), 'nothing may be written')

  def test_python_tag_in_yaml_names_the_file(self):
    path = os.path.join(self.get_temp_dir(), 'tuple.yaml')
    with open(path, 'w') as f:
      f.write('task:\n  train_data:\n    feature_shape: !!python/tuple [8, 32, 32, 3]\n')
    command = [sys.executable, '-m', 'official_cvrl.train', '--experiment=cvrl_linear_eval_demo', '--mode=train',
               f'--model_dir={os.path.join(self.get_temp_dir(), "tuple")}', f'--config_file={path}']
    self._assert_one_error_line(_run(command), f'--config_file={path}: !!python/tuple at line 3',
                                'only plain YAML is accepted')

  def test_extending_a_task_recipe_runs_as_documented(self):
    """README "Extending a task": its two files, verbatim, train a subclass whose extra loss term is reported."""
    project = os.path.join(self.get_temp_dir(), 'user')
    os.makedirs(os.path.join(project, 'my_project'), exist_ok=True)
    for name in ('my_pretrain.py', 'train.py'):
      with open(os.path.join(project, 'my_project', name), 'w') as f:
        f.write(_readme_block(f'# my_project/{name}'))
    model_dir = os.path.join(self.get_temp_dir(), 'my_pretrain')
    command = [sys.executable, '-m', 'my_project.train', '--experiment=my_pretrain_demo', '--mode=train',
               f'--model_dir={model_dir}', '--enable_async_checkpointing=false',
               f'--params_override={_tiny_overrides(self.train_path, 2)}',
               # A second --params_override is merged with the first, not substituted for it.
               '--params_override=task.feature_decorrelation_weight=0.05']
    result = _run(command, cwd=project)
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    self.assertRegex(result.stdout, r'(?m)^train \| step:\s+2 \|.*decorrelation_loss=[0-9.e+-]+')
    self.assertIn('feature_decorrelation_weight: 0.05', open(os.path.join(model_dir, 'params.yaml')).read())
    self.assertIn('train_steps: 2', open(os.path.join(model_dir, 'params.yaml')).read())
    self.assertIn('decorrelation_loss', _summary_tags(os.path.join(model_dir, 'train')))

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
