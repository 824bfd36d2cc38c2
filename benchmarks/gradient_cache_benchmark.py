r"""Memory and time of a pretraining step with gradient caching vs the ordinary step.

Each configuration runs in its own process (peak RSS is per process), builds the CVRL model of an experiment,
and times `CVRLPretrainTask.train_step` (graph mode, after one warm-up step) on random uint8 clips:

  small   the ordinary step at batch --small_batch (what fits without caching);
  large   the ordinary step at batch --large_batch (the batch caching is for; may not fit);
  cached  the cached step at batch --large_batch with chunks of --chunk_size rows.

Goal (issue): the cached step's memory within 1.3x of the small step's, its time within 1.5x of the large step's.
On a GPU host the peak device memory (`tf.config.experimental.get_memory_info`) is reported too.

  # R3D-50 at 16x112x112, the issue's setting (needs a large host or a GPU):
  python -m benchmarks.gradient_cache_benchmark --experiment=cvrl_pretrain_kinetics400 \
    --feature_shape=16,112,112,3 --small_batch=16 --large_batch=256 --chunk_size=32
  # The demo model, what this CPU can run:
  python -m benchmarks.gradient_cache_benchmark --experiment=cvrl_pretrain_demo \
    --feature_shape=8,32,32,3 --small_batch=16 --large_batch=256 --chunk_size=32
"""
import json
import os
import resource
import subprocess
import sys
import time

from absl import app
from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string('experiment', 'cvrl_pretrain_demo', 'Registered pretraining experiment whose model is timed.')
flags.DEFINE_list('feature_shape', ['8', '32', '32', '3'], 'Clip shape [frames, height, width, 3].')
flags.DEFINE_integer('small_batch', 16, 'Videos per batch of the ordinary small step.')
flags.DEFINE_integer('large_batch', 256, 'Videos per batch of the large ordinary step and of the cached step.')
flags.DEFINE_integer('chunk_size', 32, 'Rows (clips) per chunk of the cached step; divides 2 x large_batch.')
flags.DEFINE_integer('steps', 3, 'Timed steps per configuration (after one warm-up step); 0: peak memory only.')
flags.DEFINE_list('configs', ['small', 'large', 'cached'], 'Which configurations to run.')
flags.DEFINE_string('_worker', None, 'Internal: run one configuration given as JSON and print its result.')


def run_one(spec):
  """Builds the task and model, runs warm-up + timed steps; returns a result dict."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (only in the worker process)
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from official.core import task_factory  # pylint: disable=g-import-not-at-top
  from official_cvrl import registry_imports  # pylint: disable=g-import-not-at-top,unused-import

  config = exp_factory.get_exp_config(spec['experiment'])
  config.task.train_data.feature_shape = spec['feature_shape']
  config.task.train_data.global_batch_size = spec['batch']
  config.task.gradient_chunk_size = spec['chunk_size']
  config.task.model.norm_activation.use_sync_bn = False  # One device; sync BN needs a strategy.
  task = task_factory.get_task(config.task)
  model = task.build_model()
  optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
  frames, height, width, _ = spec['feature_shape']
  # Drawn as uint8 directly: an int32 draw of the whole batch (4x its size) would set the peak RSS itself.
  images = np.random.default_rng(0).integers(0, 256, [2 * spec['batch'], frames, height, width, 3], np.uint8)
  batch = ({'image': tf.constant(images)}, {'label': tf.zeros([spec['batch']], tf.int32)})
  del images
  step = tf.function(lambda b: task.train_step(b, model, optimizer)['loss'])
  step(batch).numpy()  # Trace and warm up.
  start = time.perf_counter()
  for _ in range(spec['steps']):
    step(batch).numpy()
  # --steps=0 measures memory only: one step (with tracing) sets the peak, and a second one of a large cached
  # batch would cost as long again on a CPU.
  seconds = (time.perf_counter() - start) / spec['steps'] if spec['steps'] else None
  result = {'seconds_per_step': seconds, 'peak_rss_gb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}
  if tf.config.list_physical_devices('GPU'):
    result['peak_gpu_gb'] = tf.config.experimental.get_memory_info('GPU:0')['peak'] / 2**30
  return result


def _seconds(result):
  return '-' if result['seconds_per_step'] is None else f'{result["seconds_per_step"]:.2f}'


def main(_):
  if FLAGS._worker:  # pylint: disable=protected-access
    print('RESULT ' + json.dumps(run_one(json.loads(FLAGS._worker))))  # pylint: disable=protected-access
    return
  shape = [int(v) for v in FLAGS.feature_shape]
  specs = {
      'small': dict(batch=FLAGS.small_batch, chunk_size=0),
      'large': dict(batch=FLAGS.large_batch, chunk_size=0),
      'cached': dict(batch=FLAGS.large_batch, chunk_size=FLAGS.chunk_size),
  }
  print(f'{FLAGS.experiment} {shape}, {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}')
  results = {}
  for name in FLAGS.configs:
    spec = dict(specs[name], experiment=FLAGS.experiment, feature_shape=shape, steps=FLAGS.steps)
    proc = subprocess.run([sys.executable, '-m', 'benchmarks.gradient_cache_benchmark',
                           '--_worker=' + json.dumps(spec)], capture_output=True, text=True, check=False)
    lines = [l for l in proc.stdout.splitlines() if l.startswith('RESULT ')]
    if proc.returncode or not lines:
      tail = (proc.stderr.strip().splitlines() or ['(no output)'])[-1]
      print(f'{name}: did not complete (exit {proc.returncode}): {tail}')
      continue
    results[name] = json.loads(lines[-1][len('RESULT '):])
    print(f'{name}: {results[name]}')
  print('| config | videos/batch | chunk (rows) | s/step | peak RSS (GB) |')
  print('| --- | --- | --- | --- | --- |')
  for name, result in results.items():
    print(f'| {name} | {specs[name]["batch"]} | {specs[name]["chunk_size"] or "-"} '
          f'| {_seconds(result)} | {result["peak_rss_gb"]:.2f} |')
  if 'cached' in results and 'small' in results:
    print(f'cached / small memory: {results["cached"]["peak_rss_gb"] / results["small"]["peak_rss_gb"]:.2f}x')
  if 'cached' in results and 'large' in results and FLAGS.steps:
    print(f'cached / large time: {results["cached"]["seconds_per_step"] / results["large"]["seconds_per_step"]:.2f}x')


if __name__ == '__main__':
  app.run(main)
