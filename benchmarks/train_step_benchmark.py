"""Throughput of the CVRL pretraining train step (clips/s), float32 vs mixed precision, XLA on/off.

Runs the registered task's own `train_step` (on-device colour augmentation, model, global-batch contrastive
loss, optimizer update) on synthetic uint8 clips, so the input pipeline is not measured (see
input_pipeline_benchmark.py for that). Runs unchanged on a CPU, a GPU or several GPUs (MirroredStrategy over
every visible GPU):

  python -m benchmarks.train_step_benchmark --experiment=cvrl_pretrain_kinetics400 --per_replica_batch=8 \
      --precisions=float32,float16 --xla=false,true        # GPU: R3D-50, 2 x 16 x 224 x 224 clips
  python -m benchmarks.train_step_benchmark --experiment=cvrl_pretrain_demo --per_replica_batch=64 \
      --precisions=float32 --xla=false                           # the CPU demo model
  ... --params_override=task.train_data.spatial_augmentation.enabled=false   # the same step without colour
                                                                              # augmentation: its share of the step

One clip = one view; a batch of B videos is 2B clips. A setting the device cannot run (e.g. float16 on a CPU,
which has no float16 MaxPool3D kernel) is skipped with a row saying why, so the defaults run anywhere.
"""
import itertools
import re
import sys
import time
from typing import Optional

from absl import app
from absl import flags

import official_cvrl  # pylint: disable=unused-import  (sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads)
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.modeling import hyperparams
from official.modeling import performance

from official_cvrl import registry_imports  # pylint: disable=unused-import

flags.DEFINE_string('experiment', 'cvrl_pretrain_kinetics400', 'Registered pretraining experiment.')
flags.DEFINE_integer('per_replica_batch', 8, 'Videos (pairs of clips) per replica and step.')
flags.DEFINE_list('precisions', ['float32', 'float16'], 'float32, float16 and/or bfloat16 (the latter two mixed).')
flags.DEFINE_list('xla', ['false', 'true'], 'Compile the train step with XLA (jit_compile): false and/or true.')
flags.DEFINE_integer('warmup_steps', 3, 'Untimed steps (tracing, compilation, autotuning).')
flags.DEFINE_integer('steps', 10, 'Timed steps.')
flags.DEFINE_string('params_override', '', 'Overrides of the experiment, as for train.py (YAML or key=value,...).')
FLAGS = flags.FLAGS


def experiment_config(experiment: str, params_override: str):
  """The registered experiment with `params_override` applied strictly (a misspelt key is an error)."""
  config = exp_factory.get_exp_config(experiment)
  if params_override:
    config = hyperparams.override_params_dict(config, params_override, is_strict=True)
  return config


def measure(precision: str, xla: bool) -> float:
  """Clips per second of the train step in one setting."""
  tf_keras.backend.clear_session()
  performance.set_mixed_precision_policy(precision)
  config = experiment_config(FLAGS.experiment, FLAGS.params_override)
  config.runtime.mixed_precision_dtype = precision
  config.runtime.loss_scale = 'dynamic' if precision == 'float16' else None
  config.task.model.norm_activation.use_sync_bn = False  # One host: sync BN adds only an all-reduce.
  gpus = tf.config.list_logical_devices('GPU')
  strategy = tf.distribute.MirroredStrategy() if gpus else tf.distribute.get_strategy()
  num_replicas = strategy.num_replicas_in_sync
  frames, height, width, channels = config.task.train_data.feature_shape
  with strategy.scope():
    task = task_factory.get_task(config.task)
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
    metrics = task.build_metrics()

  def batch_fn(unused_context):
    clips = tf.random.uniform([2 * FLAGS.per_replica_batch, frames, height, width, channels], 0, 256, tf.int32)
    return {'image': tf.cast(clips, tf.uint8)}, {'label': tf.zeros([FLAGS.per_replica_batch], tf.int32)}

  inputs = strategy.experimental_distribute_values_from_function(batch_fn)
  step_fn = tf.function(task.train_step, jit_compile=xla)

  @tf.function
  def step():
    return strategy.run(step_fn, args=(inputs,), kwargs=dict(model=model, optimizer=optimizer, metrics=metrics))

  for _ in range(FLAGS.warmup_steps):
    step()
  start = time.perf_counter()
  for _ in range(FLAGS.steps):
    logs = step()
  float(strategy.experimental_local_results(logs['loss'])[0])  # Wait for the device.
  elapsed = time.perf_counter() - start
  return 2 * FLAGS.per_replica_batch * num_replicas * FLAGS.steps / elapsed


# Errors that mean "this device cannot run this setting" rather than a bug: a kernel missing for the dtype on the
# device (NotFoundError "Could not find device for node: {{node MaxPool3D}} = MaxPool3D[T=DT_HALF, ...]"), or XLA
# refusing an op.
_UNSUPPORTED_MESSAGE = re.compile(r'No registered .* OpKernel|Could not find device for node|unsupported operations|'
                                  r'not supported', re.IGNORECASE)


def unsupported_reason(error: Exception) -> Optional[str]:
  """A one-line reason when `error` says the device cannot run a setting; None for any other error."""
  if not isinstance(error, tf.errors.OpError):
    return None
  message = ' '.join(str(error.message).split())
  if not isinstance(error, tf.errors.UnimplementedError) and not _UNSUPPORTED_MESSAGE.search(message):
    return None  # E.g. a NotFoundError about a file, or a shape error: a real failure, raised.
  kernel = (re.search(r"No registered '(\w+)' OpKernel", message) or
            re.search(r'Could not find device for node: \{\{node \w+\}\} = (\w+)\[', message))
  if kernel:
    dtype = re.search(r'T=DT_(\w+)', message)
    return f'no {kernel.group(1)} kernel for {dtype.group(1).lower() if dtype else "this dtype"}'
  match = _UNSUPPORTED_MESSAGE.search(message)
  start = max(0, match.start() - 60) if match else 0
  return message[start:start + 150]


def main(_):
  try:  # A misspelt override is the user's to fix: say which, rather than a traceback from the first setting.
    experiment_config(FLAGS.experiment, FLAGS.params_override)
  except (KeyError, ValueError) as e:
    sys.exit(f'error: --experiment={FLAGS.experiment} --params_override={FLAGS.params_override}: '
             f'{e.args[0] if e.args else e!r}')
  devices = tf.config.list_logical_devices('GPU') or tf.config.list_logical_devices('CPU')[:1]
  print(f'experiment {FLAGS.experiment}, {len(devices)} x {devices[0].device_type}, '
        f'{FLAGS.per_replica_batch} videos per replica and step'
        + (f', overrides: {FLAGS.params_override}' if FLAGS.params_override else ''))
  print('| precision | XLA | clips/s |')
  print('|---|---|---|')
  for precision, xla in itertools.product(FLAGS.precisions, FLAGS.xla):
    try:
      rate = measure(precision, xla.lower() == 'true')
    except tf.errors.OpError as e:
      reason = unsupported_reason(e)
      if reason is None:
        raise
      print(f'| {precision} | {xla} | skipped: {devices[0].device_type} cannot run it ({reason}) |', flush=True)
      continue
    print(f'| {precision} | {xla} | {rate:.1f} |', flush=True)


if __name__ == '__main__':
  app.run(main)
