"""The training driver as real replicated systems: two worker processes on 127.0.0.1 with a TF_CONFIG, two CPU
replicas in one process (`--cpu_devices`), and the GPU-count check.

Why the contrastive loss proves the negatives are global: with a temperature of 1000 every logit is within 1e-3
of the others, so the softmax is uniform to 1e-3 and the InfoNCE loss (and the softmax entropy) equals log(number
of candidates). Global batch 8, two clips per video: a replica that sees only its own 4 videos has 2 * 4 - 1 = 7
candidates per anchor (loss log 7 = 1.95); gathered over both replicas it has 15 (log 15 = 2.71).

Times on the 2-core machine while other tests run: the two-worker test about 2-3 minutes (two workers train, then
one process resumes from the chief's checkpoint; an idle machine takes about half), the CPU-replica test about a
minute, the GPU-count error about 20 s (TensorFlow's import). Each process is bounded by a timeout and only the
processes a test started are stopped (tests/local_cluster.py).
"""

import glob
import json
import math
import os
import re

import tensorflow as tf

from tests import fake_records
from tests import local_cluster

_GLOBAL_BATCH = 8


def _overrides(train_path: str, train_steps: int, *extra: str) -> str:
  """cvrl_pretrain_demo at [4, 32, 32, 3], global batch 8, a near-uniform softmax, a checkpoint every 2 steps."""
  return ','.join([
      f'task.train_data.input_path={train_path}', f'task.validation_data.input_path={train_path}',
      'task.train_data.feature_shape=[4,32,32,3]', 'task.validation_data.feature_shape=[4,32,32,3]',
      f'task.train_data.global_batch_size={_GLOBAL_BATCH}', f'task.validation_data.global_batch_size={_GLOBAL_BATCH}',
      'task.train_data.shuffle_buffer_size=4', 'task.losses.temperature=1000',
      'task.model.projection_head.hidden_dim=32', 'task.model.projection_head.output_dim=8',
      f'trainer.train_steps={train_steps}', 'trainer.steps_per_loop=1', 'trainer.checkpoint_interval=2',
      'trainer.summary_interval=1', 'trainer.validation_steps=1', f'trainer.validation_interval={train_steps}',
      'trainer.optimizer_config.warmup.linear.warmup_steps=0',
      'trainer.optimizer_config.learning_rate.cosine.offset=0',
      f'trainer.optimizer_config.learning_rate.cosine.decay_steps={train_steps}',
      *extra])


def _command(model_dir: str, overrides: str, *flags: str):
  return local_cluster.python_command(
      '-m', 'official_cvrl.train', '--experiment=cvrl_pretrain_demo', '--mode=train', f'--model_dir={model_dir}',
      f'--params_override={overrides}', '--enable_async_checkpointing=false', '--seed=1', *flags)


def _step_metrics(log: str, step: int) -> dict:
  """The metrics of the `train | step: N | ... output: a=1, b=2` line of `step`."""
  match = re.search(rf'(?m)^train \| step:\s+{step} \|.*output: (.*)$', log)
  assert match, f'no step {step} line in:\n{log[-3000:]}'
  return {k: float(v) for k, v in re.findall(r'(\w+)=([-0-9.e+]+|nan|inf)', match.group(1))}


def _checkpoint_step(model_dir: str) -> int:
  latest = tf.train.latest_checkpoint(model_dir)
  return int(latest.rsplit('-', 1)[1]) if latest else 0


class MultiWorkerTrainingTest(tf.test.TestCase):

  def setUp(self):
    super().setUp()
    self.train_path = fake_records.write_records(os.path.join(self.get_temp_dir(), 'train.tfrecord'), 16)

  def test_two_workers_gather_negatives_and_the_chiefs_checkpoint_continues_alone(self):
    root = self.get_temp_dir()
    model_dir = os.path.join(root, 'model')
    scratch = os.path.join(root, 'worker_tmp')  # The workers' TMPDIR: non-chief checkpoint copies go there.
    os.makedirs(scratch)
    workers = [f'127.0.0.1:{port}' for port in local_cluster.free_ports(2)]
    overrides = _overrides(self.train_path, 2, 'runtime.distribution_strategy=multi_worker_mirrored',
                           'task.model.norm_activation.use_sync_bn=true')
    names = ['worker0', 'worker1']
    with local_cluster.ProcessGroup(os.path.join(root, 'logs')) as group:
      for index, name in enumerate(names):
        tf_config = {'cluster': {'worker': workers}, 'task': {'type': 'worker', 'index': index}}
        group.start(name, _command(model_dir, overrides),
                    env=local_cluster.user_env(TF_CONFIG=json.dumps(tf_config), TMPDIR=scratch))
      statuses = group.wait_all(names, timeout=600)
      logs = {name: group.log(name, tail=200000) for name in names}
    for name in names:
      self.assertEqual(statuses[name], 0, f'{name}:\n{logs[name][-4000:]}')

    # Negatives are global: 15 candidates per anchor, where a worker alone has 7.
    local, gathered = math.log(2 * _GLOBAL_BATCH // 2 - 1), math.log(2 * _GLOBAL_BATCH - 1)
    for name in names:
      metrics = _step_metrics(logs[name], 1)
      self.assertAllClose([metrics['contrastive_loss'], metrics['contrastive_entropy']], [gathered] * 2, atol=0.01)
      self.assertGreater(metrics['contrastive_entropy'], local + 0.5)
    # Both workers log the same reduced metrics: one model, one step.
    self.assertEqual(_step_metrics(logs['worker0'], 2), _step_metrics(logs['worker1'], 2))

    self.assertEqual(_checkpoint_step(model_dir), 2)
    # Only the chief writes summaries; the other worker's checkpoint copy is removed.
    event_files = glob.glob(os.path.join(model_dir, '**', 'events.out.tfevents.*'), recursive=True)
    self.assertLen(event_files, 1, event_files)
    self.assertEqual(os.listdir(scratch), [])
    self.assertEqual(sorted(os.listdir(model_dir)), ['checkpoint', 'ckpt-1.data-00000-of-00001', 'ckpt-1.index',
                                                     'ckpt-2.data-00000-of-00001', 'ckpt-2.index',
                                                     'operative_config.train.gin', 'params.yaml', 'train'])

    # The chief's checkpoint restores in a single process, which trains on from step 2.
    with local_cluster.ProcessGroup(os.path.join(root, 'logs_single')) as group:
      group.start('single', _command(model_dir, _overrides(self.train_path, 4)))
      status = group.wait('single', timeout=600)
      log = group.log('single', tail=200000)
    self.assertEqual(status, 0, log[-4000:])
    self.assertNotRegex(log, r'(?m)^train \| step:\s+1 \|')
    self.assertAllClose(_step_metrics(log, 3)['contrastive_loss'], gathered, atol=0.01)
    self.assertEqual(_checkpoint_step(model_dir), 4)

  def test_cpu_replicas_through_the_driver(self):
    model_dir = os.path.join(self.get_temp_dir(), 'cpu_replicas')
    overrides = _overrides(self.train_path, 2, 'runtime.distribution_strategy=mirrored',
                           'task.model.norm_activation.use_sync_bn=true')
    with local_cluster.ProcessGroup(os.path.join(self.get_temp_dir(), 'logs_cpu')) as group:
      group.start('train', _command(model_dir, overrides, '--cpu_devices=2'))
      status = group.wait('train', timeout=600)
      log = group.log('train', tail=200000)
    self.assertEqual(status, 0, log[-4000:])
    self.assertIn('MirroredStrategy over 2 CPU devices', log)
    self.assertAllClose(_step_metrics(log, 1)['contrastive_loss'], math.log(2 * _GLOBAL_BATCH - 1), atol=0.01)
    self.assertEqual(_checkpoint_step(model_dir), 2)

  def test_more_gpus_than_exist_is_one_error_line(self):
    visible = len(tf.config.list_physical_devices('GPU'))
    model_dir = os.path.join(self.get_temp_dir(), 'gpus')
    overrides = _overrides(self.train_path, 2, f'runtime.num_gpus={visible + 2}')
    with local_cluster.ProcessGroup(os.path.join(self.get_temp_dir(), 'logs_gpu')) as group:
      group.start('train', _command(model_dir, overrides))
      status = group.wait('train', timeout=120)  # It used to hang forever.
      log = group.log('train')
    self.assertEqual(status, 2, log)
    self.assertNotIn('Traceback', log)
    errors = [line for line in log.splitlines() if line.startswith('error:')]
    self.assertEqual(errors, [f'error: runtime.num_gpus={visible + 2} but TensorFlow sees {visible} GPU(s) on this '
                              f'machine. Set runtime.num_gpus={visible}'
                              f'{" (add --cpu_devices=N for N replicas on the CPU)" if not visible else ""}; '
                              'README, "Scaling out".'])
    self.assertFalse(os.path.exists(os.path.join(model_dir, 'params.yaml')), 'nothing may be built')


if __name__ == '__main__':
  tf.test.main()
