"""What the training driver adds to Model Garden's distribution set-up: CPU replicas, a GPU count check, and
non-chief workers that neither leak checkpoint copies nor write into the chief's summaries.

* `--cpu_devices=N` splits the CPU into N logical devices, and `runtime.distribution_strategy=mirrored` then
  mirrors the model over them (Model Garden mirrors over one CPU device when `runtime.num_gpus=0`): N
  data-parallel replicas on any machine, with the same cross-replica negatives and synchronized batch norm as N
  GPUs, so replica code can be tried and tested without an accelerator.
* `runtime.num_gpus` above the GPUs TensorFlow sees is a `UserInputError` before anything is built; Model Garden
  would build a MirroredStrategy over devices that do not exist and hang in its first all-reduce.
* In multi-worker training every worker must save when the chief saves (saving reads variables, and reads
  synchronise all workers), so Model Garden gives each non-chief worker a `tempfile.mkdtemp()` folder that is never
  removed: a full checkpoint copy leaks per worker and run. Here that folder is removed when training ends. A
  non-chief worker also restores from the chief's `model_dir` (its own folder is always empty), so that a resumed
  run continues from the same step on every worker, and it writes no TensorBoard summaries: its metrics are the
  chief's (they are reduced over all replicas), and two writers in `model_dir/train` would interleave.
"""

import contextlib
import functools
import os
import shutil
import tempfile
from typing import Iterator, List, Optional

from absl import logging
import tensorflow as tf

from official.common import distribute_utils
from official.core import train_lib

from official_cvrl.utils import errors

# Strategies whose devices Model Garden picks from `runtime.num_gpus`.
_USES_NUM_GPUS = ('mirrored', 'one_device', 'off')

# Model Garden's own, kept before `model_garden_patched` replaces them for the duration of a run.
_original_get_distribution_strategy = distribute_utils.get_distribution_strategy
_original_run_experiment = train_lib.run_experiment


def split_cpu(num_devices: int) -> List[tf.config.LogicalDevice]:
  """Splits the first CPU into `num_devices` logical devices; must run before TensorFlow creates its devices.

  Raises:
    errors.UserInputError: the devices already exist (something ran TensorFlow ops before).
  """
  if num_devices < 1:
    raise errors.UserInputError(f'--cpu_devices must be >= 1, got {num_devices}.')
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as e:
    raise errors.UserInputError(f'--cpu_devices={num_devices}: TensorFlow\'s devices were already created ({e}); '
                                'set it before any TensorFlow op runs.') from e
  return tf.config.list_logical_devices('CPU')


def check_devices(distribution_strategy: str, num_gpus: int, cpu_devices: int) -> None:
  """Rejects device settings this machine cannot run, naming the key and the fix.

  Args:
    distribution_strategy: `runtime.distribution_strategy`.
    num_gpus: `runtime.num_gpus`.
    cpu_devices: the `--cpu_devices` flag (1 = the CPU as one device).

  Raises:
    errors.UserInputError: more GPUs asked for than visible, or CPU devices with a strategy that ignores them.
  """
  strategy = str(distribution_strategy).lower()
  if strategy in _USES_NUM_GPUS:
    visible = len(tf.config.list_physical_devices('GPU'))
    if num_gpus > visible:
      mask = os.environ.get('CUDA_VISIBLE_DEVICES')
      raise errors.UserInputError(
          f'runtime.num_gpus={num_gpus} but TensorFlow sees {visible} GPU(s) on this machine'
          f'{f" (CUDA_VISIBLE_DEVICES={mask})" if mask is not None else ""}. '
          f'Set runtime.num_gpus={visible}'
          f'{" (add --cpu_devices=N for N replicas on the CPU)" if not visible else ""}; README, "Scaling out".')
  if cpu_devices > 1 and (strategy != 'mirrored' or num_gpus):
    raise errors.UserInputError(
        f'--cpu_devices={cpu_devices} needs runtime.distribution_strategy=mirrored and runtime.num_gpus=0 (got '
        f'{distribution_strategy!r} and {num_gpus}): only then are the CPU devices the replicas.')


def get_distribution_strategy(cpu_devices: int = 1, **kwargs) -> tf.distribute.Strategy:
  """`distribute_utils.get_distribution_strategy`, mirrored over every logical CPU when `cpu_devices` > 1."""
  if cpu_devices > 1 and kwargs.get('distribution_strategy', '').lower() == 'mirrored' and not kwargs.get('num_gpus'):
    devices = [device.name for device in tf.config.list_logical_devices('CPU')]
    if len(devices) != cpu_devices:
      raise errors.UserInputError(f'--cpu_devices={cpu_devices} but TensorFlow has {len(devices)} CPU devices; '
                                  'split the CPU (`split_cpu`) before TensorFlow creates its devices.')
    logging.info('Data-parallel on the CPU: MirroredStrategy over %d CPU devices (--cpu_devices).', len(devices))
    return tf.distribute.MirroredStrategy(devices=devices)
  return _original_get_distribution_strategy(**kwargs)


class _ChiefRestoringCheckpointManager(tf.train.CheckpointManager):
  """Saves into a worker's scratch folder, restores from the chief's: what a non-chief worker needs."""

  def __init__(self, checkpoint: tf.train.Checkpoint, directory: str, chief_directory: str, **kwargs):
    super().__init__(checkpoint, directory=directory, **kwargs)
    self._chief_directory = chief_directory

  def restore_or_initialize(self):
    latest = tf.train.latest_checkpoint(self._chief_directory)
    if latest is None:
      return super().restore_or_initialize()
    self._checkpoint.restore(latest)
    return latest


class _WorkerExperimentRunner(train_lib.OrbitExperimentRunner):
  """Model Garden's runner for a non-chief worker: checkpoint copies in `scratch_dir`, no summaries."""

  def __init__(self, scratch_dir: str, **kwargs):
    self._scratch_dir = scratch_dir
    super().__init__(save_summary=False, summary_manager=None, eval_summary_manager=None, **kwargs)

  def _maybe_build_checkpoint_manager(self) -> Optional[tf.train.CheckpointManager]:
    if not self.trainer.checkpoint:
      return None
    return _ChiefRestoringCheckpointManager(
        self.trainer.checkpoint, directory=self._scratch_dir, chief_directory=self.model_dir, max_to_keep=1,
        step_counter=self.trainer.global_step, checkpoint_interval=self.params.trainer.checkpoint_interval,
        init_fn=self.trainer.initialize)


@contextlib.contextmanager
def _scratch_dir(worker: str) -> Iterator[str]:
  path = tempfile.mkdtemp(prefix=f'cvrl_{worker}_checkpoint_copy_')
  try:
    yield path
  finally:
    shutil.rmtree(path, ignore_errors=True)


def _worker_name(strategy: tf.distribute.Strategy) -> str:
  resolver = getattr(strategy, 'cluster_resolver', None)
  if resolver is None:
    return 'worker'
  return f'{resolver.task_type}{resolver.task_id}'


def run_experiment(*, distribution_strategy: tf.distribute.Strategy, **kwargs):
  """`train_lib.run_experiment`; on a non-chief worker, with `_WorkerExperimentRunner` and its scratch folder."""
  if distribution_strategy.extended.should_checkpoint:
    return _original_run_experiment(distribution_strategy=distribution_strategy, **kwargs)
  for unused in ('save_summary', 'summary_manager', 'eval_summary_manager'):
    kwargs.pop(unused, None)
  with _scratch_dir(_worker_name(distribution_strategy)) as scratch:
    return _WorkerExperimentRunner(scratch, distribution_strategy=distribution_strategy, **kwargs).run()



@contextlib.contextmanager
def model_garden_patched(cpu_devices: int = 1) -> Iterator[None]:
  """Within the block, `official.vision.train.main` uses this module's strategy and runner.

  Model Garden's driver looks both up as module attributes at call time, so replacing them there (and putting
  them back afterwards) reuses its driver unchanged, preemption recovery included, instead of forking it.
  """
  replacements = [(distribute_utils, 'get_distribution_strategy',
                   functools.partial(get_distribution_strategy, cpu_devices)),
                  (train_lib, 'run_experiment', run_experiment)]
  saved = [(module, name, getattr(module, name)) for module, name, _ in replacements]
  try:
    for module, name, value in replacements:
      setattr(module, name, value)
    yield
  finally:
    for module, name, value in saved:
      setattr(module, name, value)
