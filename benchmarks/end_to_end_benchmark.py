r"""End-to-end pretraining throughput against Model Garden's video_ssl: input pipeline + train step, pairs/s.

Runs the whole pretraining step as a user runs it, on the same TFRecords, model architecture, clip size, batch,
precision and distribution strategy for both sides:
  ours          the registered experiment (`--experiment`, default `cvrl_pretrain_kinetics400`) through its task:
                `task.build_inputs` (`ssl_input` pipeline: interval sampling, crop window decode, resize, flip,
                uint8 clips) and `task.train_step` (on-device colour jitter / greyscale / blur, R3D, projection
                head, InfoNCE, SGD update);
  model_garden  `video_ssl_pretrain_kinetics400` through Model Garden's own `VideoSSLPretrainTask`: its
                `build_inputs` (`video_ssl_input.Parser`: full-frame decode, crop, resize, colour jitter and blur on
                the CPU, float32 clips) and its `train_step` (model, loss, update). Its backbone is Model Garden's
                `resnet_3d` configured as CVRL's R3D (5x7x7 stem with temporal stride 2, no temporal pool stride,
                temporal kernel 1 in res2/res3 and 3 in res4/res5, no self-gating): the same variables as ours.
                One substitution: with more than one replica Model Garden's loss locates its replica with
                `xla.replica_id()`, which only XLA-compiled replica contexts (TPUs) provide; so that the same
                benchmark runs on one device, several GPUs or a TPU, its InfoNCE term here is ours
                (`losses.contrastive`, which gathers negatives through the strategy), with Model Garden's own L2
                term. The loss is a negligible part of a step.

Both sides use batch norm without cross-replica synchronisation, and the same `--precisions` / `--xla` settings.
For each clip size and side it reports pairs (videos, 2 clips each) per wall-clock second and per CPU-second of
the process (the latter depends much less on other jobs sharing the machine), and CPU-milliseconds per pair, for:
  end to end          iterator of the distributed dataset -> train step, `--steps` steps after `--warmup_steps`;
  input alone         the same distributed dataset, a fresh iterator drained for `--seconds`;
  train step (fixed)  the train step on one fixed batch, no input pipeline;
  colour aug. alone   ours: the task's on-device augmentation on that batch (Model Garden's runs in its input);
  model step alone    ours: the train step with the on-device augmentation off; Model Garden: = train step (fixed).
On a CPU the pipeline and the model share the cores, so the end-to-end time per pair is about the sum of the
parts; on an accelerator it is about the largest part.

Flags shared with the benchmarks it imports: `--experiment`, `--per_replica_batch`, `--precisions`, `--xla`,
`--warmup_steps`, `--steps` (train_step_benchmark); `--num_videos`, `--frames_per_video`, `--data_dir`,
`--seconds`, `--rounds` (input_pipeline_benchmark; its `--batch_size` is not used here). Usage:

  python -m benchmarks.end_to_end_benchmark --clip_sizes=112,224 --per_replica_batch=8 \
      --precisions=float32,float16 --xla=false,true --data_dir=/tmp/cvrl_bench     # GPU host, every GPU
  python -m benchmarks.end_to_end_benchmark --clip_sizes=112,224 --per_replica_batch=1 --steps=3 --rounds=2 \
      --seconds=8 --data_dir=/tmp/cvrl_bench                   # 2-core CPU: ~16 minutes, peak RSS ~10 GiB
"""
import copy
import dataclasses
import glob
import os
import resource
import statistics
import tempfile
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging

import official_cvrl  # pylint: disable=unused-import  (sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads)
import tensorflow as tf
import tf_keras

from benchmarks import input_pipeline_benchmark
from benchmarks import train_step_benchmark
from official.common import distribute_utils
from official.core import base_task
from official.core import config_definitions as cfg
from official.core import exp_factory
from official.core import task_factory
from official.modeling import performance
from official.projects.video_ssl.configs import video_ssl as video_ssl_cfg  # pylint: disable=unused-import
from official.projects.video_ssl.modeling import video_ssl_model  # pylint: disable=unused-import
from official.projects.video_ssl.tasks import pretrain as video_ssl_pretrain
from official.vision.configs import backbones_3d
from official.vision.modeling.backbones import resnet_3d
from orbit import utils as orbit_utils

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.losses import contrastive

flags.DEFINE_list('clip_sizes', ['112', '224'], 'Crop sizes (clips of clip_frames x size x size), one table each.')
flags.DEFINE_integer('clip_frames', 16, 'Frames per clip (temporal stride: the experiment\'s, 2).')
flags.DEFINE_integer('model_id', 50, 'R3D depth on both sides (Model Garden\'s resnet_3d has 50, 101, 152, ...).')
flags.DEFINE_string('model_garden_experiment', 'video_ssl_pretrain_kinetics400', 'Model Garden experiment.')
flags.DEFINE_string('distribution_strategy', '', 'one_device, mirrored or tpu; default: tpu when --tpu is set, '
                    'mirrored over every GPU when there is one, else one_device (the CPU).')
flags.DEFINE_string('tpu', '', 'TPU address for --distribution_strategy=tpu.')
flags.DEFINE_list('device_resize_canvas', [], 'height,width: our side ships crop windows on this canvas and resizes '
                  'them in the train step (task.train_data.device_resize_canvas); "colour aug. alone" then includes '
                  'the resize. Empty: the resize runs in our input pipeline.')
FLAGS = flags.FLAGS

OURS, MODEL_GARDEN = 'ours', 'model_garden'
SIDES = (OURS, MODEL_GARDEN)
# Result keys, in the order of the printed table.
END_TO_END, INPUT, TRAIN_STEP, AUGMENT, MODEL_STEP = (
    'end to end', 'input alone', 'train step (fixed batch)', 'colour aug. alone', 'model step alone')
MEASURES = (END_TO_END, INPUT, TRAIN_STEP, AUGMENT, MODEL_STEP)


@dataclasses.dataclass
class Settings:
  """One measured configuration, the same for both sides.

  Attributes:
    file_pattern: the TFRecords (SequenceExamples of JPEG frames, `input_pipeline_benchmark.write_dataset`).
    clip_shape: [frames, size, size, 3] of every clip.
    per_replica_batch: videos (pairs of clips) per replica and step.
    precision: 'float32', 'float16' or 'bfloat16' (mixed).
    xla: compile the train step with XLA.
    warmup_steps / steps: untimed and timed steps of each step measurement.
    input_seconds: seconds of the input-alone measurement (after two warm-up batches).
    experiment: our registered pretraining experiment; model_garden_experiment: Model Garden's.
    model_id: R3D depth on both sides.
    device_resize_canvas: (height, width) to resize our clips on the device (see the flag), or None.
  """
  file_pattern: str
  clip_shape: Sequence[int] = (16, 224, 224, 3)
  per_replica_batch: int = 1
  precision: str = 'float32'
  xla: bool = False
  warmup_steps: int = 1
  steps: int = 3
  input_seconds: float = 10.0
  experiment: str = 'cvrl_pretrain_kinetics400'
  model_garden_experiment: str = 'video_ssl_pretrain_kinetics400'
  model_id: int = 50
  device_resize_canvas: Optional[Tuple[int, int]] = None


class ModelGardenPretrainTask(video_ssl_pretrain.VideoSSLPretrainTask):
  """Model Garden's video_ssl pretraining task with a contrastive loss that runs on every device.

  Model Garden's `losses.contrastive_loss` locates its replica with `xla.replica_id()` whenever there is more than
  one replica, which only XLA-compiled replica contexts (TPUs) provide. This keeps its L2 term and metric names and
  takes the InfoNCE term from `official_cvrl.losses.contrastive`, which gathers negatives through the strategy.
  """

  def build_losses(self, model_outputs, num_replicas, model):
    hidden_1, hidden_2 = tf.split(model_outputs, 2, axis=0)
    loss, stats = contrastive.contrastive_loss(hidden_1, hidden_2, temperature=self.task_config.losses.temperature)
    l2_loss = self.task_config.losses.l2_weight_decay * tf.add_n(
        [tf.nn.l2_loss(v) for v in model.trainable_variables if 'kernel' in v.name])
    total_loss = loss / num_replicas + tf.cast(l2_loss, loss.dtype)
    # Same keys and order as Model Garden's `process_metrics` expects.
    return ({'total_loss': total_loss, self.loss: total_loss},
            {'contrast_acc': stats['contrastive_accuracy'], 'contrast_entropy': stats['contrastive_entropy'],
             'reg_loss': l2_loss})


def _set_precision(config: cfg.ExperimentConfig, settings: Settings) -> None:
  config.runtime.mixed_precision_dtype = settings.precision
  config.runtime.loss_scale = 'dynamic' if settings.precision == 'float16' else None


def _with_data(config: cfg.ExperimentConfig, settings: Settings, global_batch_size: int) -> cfg.ExperimentConfig:
  """The same records, clip shape and batch on both sides; validated."""
  for data in (config.task.train_data, config.task.validation_data):
    data.input_path = settings.file_pattern
    data.feature_shape = tuple(settings.clip_shape)
  config.task.train_data.global_batch_size = global_batch_size
  config.validate()
  return config


def our_experiment(settings: Settings, global_batch_size: int) -> cfg.ExperimentConfig:
  """Our registered experiment with the benchmark's data, clip shape, batch, precision and R3D depth."""
  config = exp_factory.get_exp_config(settings.experiment)
  _set_precision(config, settings)
  task = config.task
  task.model.backbone.type = 'r3d'
  task.model.backbone.r3d.model_id = settings.model_id
  task.model.norm_activation.use_sync_bn = False
  task.train_data.device_resize_canvas = settings.device_resize_canvas
  return _with_data(config, settings, global_batch_size)


def model_garden_experiment(settings: Settings, global_batch_size: int) -> cfg.ExperimentConfig:
  """Model Garden's video_ssl experiment, its backbone configured as CVRL's R3D (see the module docstring)."""
  config = exp_factory.get_exp_config(settings.model_garden_experiment)
  _set_precision(config, settings)
  task = config.task
  blocks_per_stage = [spec[-1] for spec in resnet_3d.RESNET_SPECS[settings.model_id]]
  task.model.backbone = backbones_3d.Backbone3D(type='resnet_3d', resnet_3d=backbones_3d.ResNet3D(
      model_id=settings.model_id, stem_type='v0', stem_conv_temporal_kernel_size=5, stem_conv_temporal_stride=2,
      stem_pool_temporal_stride=1,
      block_specs=tuple(backbones_3d.ResNet3DBlock(temporal_strides=1, temporal_kernel_sizes=(kernel,) * blocks,
                                                   use_self_gating=False)
                        for kernel, blocks in zip((1, 1, 3, 3), blocks_per_stage))))
  task.model.norm_activation.use_sync_bn = False
  task.model.hidden_norm_activation.use_sync_bn = False
  return _with_data(config, settings, global_batch_size)


@dataclasses.dataclass
class Side:
  """A built side: task, model, optimizer and metrics under the strategy, and its train data config."""
  name: str
  task: base_task.Task
  model: tf_keras.Model
  optimizer: tf_keras.optimizers.Optimizer
  metrics: List[tf_keras.metrics.Metric]
  data: cfg.DataConfig
  model_only_task: Optional[base_task.Task]  # Ours with the on-device augmentation off; None for Model Garden.


def build_side(name: str, settings: Settings, strategy: tf.distribute.Strategy) -> Side:
  """Builds one side's task and model the way Model Garden's trainer does."""
  experiment = our_experiment if name == OURS else model_garden_experiment
  config = experiment(settings, settings.per_replica_batch * strategy.num_replicas_in_sync)
  with strategy.scope():
    if name == OURS:
      task = task_factory.get_task(config.task)
      model_only_config = copy.deepcopy(config.task)
      model_only_config.train_data.spatial_augmentation.enabled = False
      model_only_config.train_data.device_resize_canvas = None  # It is given resized clips (measure_side).
      model_only_task = task_factory.get_task(model_only_config)
    else:
      task = ModelGardenPretrainTask(config.task)
      model_only_task = None
    model = task.build_model()
    optimizer = task.create_optimizer(config.trainer.optimizer_config, config.runtime)
    metrics = task.build_metrics()
  return Side(name, task, model, optimizer, metrics, config.task.train_data, model_only_task)


class _Clock:
  """Wall-clock seconds and this process's CPU seconds since it was made.

  Other processes on a shared machine change the wall-clock rate from run to run; the CPU time this process needs
  per pair depends much less on them (input_pipeline_benchmark reports the same pair of rates).
  """

  def __init__(self):
    self._wall = time.perf_counter()
    self._cpu = input_pipeline_benchmark._process_cpu_seconds()  # pylint: disable=protected-access

  def rates(self, pairs: float) -> Tuple[float, float]:
    """Pairs per wall-clock second and per CPU-second."""
    cpu = input_pipeline_benchmark._process_cpu_seconds() - self._cpu  # pylint: disable=protected-access
    return pairs / (time.perf_counter() - self._wall), pairs / cpu


def _time_calls(fn: Callable[[], object], warmup: int, calls: int, pairs_per_call: int) -> Tuple[float, float]:
  """Pairs per wall-clock second and per CPU-second of `fn` (which returns a tensor) after `warmup` calls."""
  for _ in range(warmup):
    float(fn())
  clock = _Clock()
  for _ in range(calls):
    result = fn()
  float(result)  # Waits for the device.
  return clock.rates(calls * pairs_per_call)


def measure_side(side: Side, settings: Settings,
                 strategy: tf.distribute.Strategy) -> Dict[str, Tuple[float, float]]:
  """(pairs per second, pairs per CPU-second) of one side for each of `MEASURES` it has."""
  pairs_per_step = settings.per_replica_batch * strategy.num_replicas_in_sync

  def make_step(task: base_task.Task):
    step_fn = tf.function(task.train_step, jit_compile=settings.xla)

    @tf.function
    def step(inputs):
      logs = strategy.run(step_fn, args=(inputs,),
                          kwargs=dict(model=side.model, optimizer=side.optimizer, metrics=side.metrics))
      return strategy.experimental_local_results(logs[task.loss])[0]

    return step

  rates = {}

  def record(key: str, value: Tuple[float, float]) -> None:
    logging.info('%s, %s: %.3g pairs/s, %.3g pairs/CPU-s', side.name, key, *value)  # One side takes minutes.
    rates[key] = value

  step = make_step(side.task)

  # End to end: the distributed dataset feeds the step, as Model Garden's trainer does it.
  dataset = orbit_utils.make_distributed_dataset(strategy, side.task.build_inputs, side.data)
  iterator = iter(dataset)
  record(END_TO_END, _time_calls(lambda: step(next(iterator)), settings.warmup_steps, settings.steps,
                                 pairs_per_step))
  del iterator

  # Input alone: a fresh iterator (empty prefetch buffers), drained as fast as it delivers.
  iterator = iter(dataset)
  batch = next(iterator)
  next(iterator)
  batches, clock, start = 0, _Clock(), time.perf_counter()
  while time.perf_counter() - start < settings.input_seconds or batches < 2:
    batch = next(iterator)
    batches += 1
  record(INPUT, clock.rates(batches * pairs_per_step))
  del iterator

  # The step on one fixed batch: no input pipeline.
  record(TRAIN_STEP, _time_calls(lambda: step(batch), settings.warmup_steps, settings.steps, pairs_per_step))
  if side.model_only_task is None:
    record(MODEL_STEP, rates[TRAIN_STEP])  # Model Garden's train step does no augmentation.
    return rates

  task = side.task

  def augment_replica(features):
    # The task's own on-device work, as its train step calls it: the resize (with a canvas) and the augmentation.
    params = task.task_config.train_data
    clips = task._clips_on_device(features, params)  # pylint: disable=protected-access
    return task._augment_on_device(clips, params)  # pylint: disable=protected-access

  @tf.function
  def augment(inputs):
    images = strategy.run(augment_replica, args=(inputs[0],))
    return tf.add_n([tf.reduce_sum(x) for x in strategy.experimental_local_results(images)])

  record(AUGMENT, _time_calls(lambda: augment(batch), settings.warmup_steps, settings.steps, pairs_per_step))
  if side.data.device_resize_canvas is not None:
    # The model step alone gets the batch's clips already resized: the resize is in the augmentation's time.
    def resize(features, labels):
      return {'image': task._clips_on_device(features, side.data)}, labels  # pylint: disable=protected-access

    batch = strategy.run(resize, args=batch)
  model_step = make_step(side.model_only_task)
  record(MODEL_STEP, _time_calls(lambda: model_step(batch), settings.warmup_steps, settings.steps, pairs_per_step))
  return rates


def peak_rss_gib() -> float:
  """Peak resident memory of this process so far, GiB (Linux reports KiB)."""
  return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def compare(settings: Settings, strategy: tf.distribute.Strategy,
            rounds: int = 1) -> Dict[str, Dict[str, Tuple[float, float]]]:
  """Builds both sides once, measures them alternately for `rounds` rounds; medians per side and measure of
  (pairs per second, pairs per CPU-second)."""
  tf_keras.backend.clear_session()
  performance.set_mixed_precision_policy(settings.precision)
  sides = [build_side(name, settings, strategy) for name in SIDES]
  results = {side.name: {} for side in sides}
  for _ in range(rounds):
    for side in sides:
      for key, rate in measure_side(side, settings, strategy).items():
        results[side.name].setdefault(key, []).append(rate)
  return {name: {key: tuple(statistics.median(r[i] for r in rates) for i in range(2))
                 for key, rates in measures.items()}
          for name, measures in results.items()}


def get_strategy(distribution_strategy: str, tpu: str) -> tf.distribute.Strategy:
  """The strategy named by the flags, or the default for the visible devices (see --distribution_strategy)."""
  num_gpus = len(tf.config.list_physical_devices('GPU'))
  if not distribution_strategy:
    distribution_strategy = 'tpu' if tpu else 'mirrored' if num_gpus else 'one_device'
  return distribute_utils.get_distribution_strategy(distribution_strategy, num_gpus=num_gpus, tpu_address=tpu)


def machine_description() -> str:
  """CPU model, AVX-512 or not, core count and load average: what the docs' tables are labelled with."""
  model, avx512 = 'unknown CPU', 'unknown'
  if os.path.exists('/proc/cpuinfo'):
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
    models = [line.split(':', 1)[1].strip() for line in lines if line.startswith('model name')]
    model = models[0] if models else model
    flag_lines = [line for line in lines if line.startswith('flags')]
    avx512 = 'yes' if any(' avx512f' in line for line in flag_lines) else 'no'
  return (f'{model}, AVX-512 {avx512}, {os.cpu_count()} CPUs, '
          f'load average {" / ".join(f"{x:.2f}" for x in os.getloadavg())} (1 / 5 / 15 min)')


def format_table(clip_shape: Sequence[int], results: Dict[str, Dict[str, Tuple[float, float]]],
                 peak_gib: float) -> str:
  """Markdown: per side and measure, pairs/s, pairs per CPU-second and CPU-milliseconds per pair (where the time
  goes), then ours / Model Garden by both rates."""
  clip = 'x'.join(str(d) for d in clip_shape[:3])
  lines = [f'| clip {clip} | ' + ' | '.join(MEASURES) + ' |', '|---' * (len(MEASURES) + 1) + '|']
  rows = (('pairs/s', 0, lambda r: f'{r:.3g}'), ('pairs/CPU-s', 1, lambda r: f'{r:.3g}'),
          ('CPU-ms/pair', 1, lambda r: f'{1e3 / r:.0f}'))
  for name in SIDES:
    for label, index, fmt in rows:
      cells = [fmt(results[name][key][index]) if key in results[name] else '-' for key in MEASURES]
      lines.append(f'| {name} {label} | ' + ' | '.join(cells) + ' |')
  for label, index, _ in rows[:2]:
    ratios = [f'{results[OURS][key][index] / results[MODEL_GARDEN][key][index]:.2f}x'
              if key in results[MODEL_GARDEN] else '-' for key in MEASURES]
    lines.append(f'| ours / Model Garden, {label} | ' + ' | '.join(ratios) + ' |')
  wall, cpu = (results[OURS][END_TO_END][i] / results[MODEL_GARDEN][END_TO_END][i] for i in range(2))
  lines.append(f'\nours / Model Garden end to end: {wall:.2f}x (pairs/s), {cpu:.2f}x (pairs/CPU-s); '
               f'peak RSS of the process so far {peak_gib:.1f} GiB')
  return '\n'.join(lines)


def prepare_data(data_dir: Optional[str], num_videos: int, frames_per_video: int) -> str:
  """The benchmark TFRecords' glob, written with input_pipeline_benchmark's writer when `data_dir` has none."""
  data_dir = data_dir or tempfile.mkdtemp(prefix='cvrl_e2e_bench_')
  tf.io.gfile.makedirs(data_dir)
  pattern = os.path.join(data_dir, input_pipeline_benchmark._FILE_PATTERN)  # pylint: disable=protected-access
  if not glob.glob(pattern):
    print(f'Writing {num_videos} videos x {frames_per_video} frames to {data_dir} ...', flush=True)
    input_pipeline_benchmark.write_dataset(data_dir, num_videos, frames_per_video)
  return pattern


def main(_):
  strategy = get_strategy(FLAGS.distribution_strategy, FLAGS.tpu)
  pattern = prepare_data(FLAGS.data_dir, FLAGS.num_videos, FLAGS.frames_per_video)
  devices = strategy.extended.worker_devices
  print(f'{machine_description()}\n{type(strategy).__name__} over {len(devices)} device(s) {list(devices)}; '
        f'R3D-{FLAGS.model_id}, {FLAGS.per_replica_batch} pairs per replica and step; data {pattern}', flush=True)
  for size in FLAGS.clip_sizes:
    for precision in FLAGS.precisions:
      for xla in FLAGS.xla:
        settings = Settings(
            file_pattern=pattern, clip_shape=(FLAGS.clip_frames, int(size), int(size), 3),
            per_replica_batch=FLAGS.per_replica_batch, precision=precision, xla=xla.lower() == 'true',
            warmup_steps=FLAGS.warmup_steps, steps=FLAGS.steps, input_seconds=FLAGS.seconds,
            experiment=FLAGS.experiment, model_garden_experiment=FLAGS.model_garden_experiment,
            model_id=FLAGS.model_id,
            device_resize_canvas=tuple(int(side) for side in FLAGS.device_resize_canvas) or None)
        print(f'\n{precision}, XLA {xla}, load average at start {os.getloadavg()[0]:.2f}', flush=True)
        try:
          results = compare(settings, strategy, FLAGS.rounds)
        except tf.errors.OpError as e:
          reason = train_step_benchmark.unsupported_reason(e)
          if reason is None:
            raise
          print(f'skipped: {devices[0]} cannot run it ({reason})', flush=True)
          continue
        print(format_table(settings.clip_shape, results, peak_rss_gib()), flush=True)
        print(f'load average at end {os.getloadavg()[0]:.2f}', flush=True)


if __name__ == '__main__':
  # CPU-friendly defaults for the flags of the imported benchmarks (their own defaults target their use).
  FLAGS.set_default('precisions', ['float32'])
  FLAGS.set_default('xla', ['false'])
  FLAGS.set_default('warmup_steps', 1)
  FLAGS.set_default('steps', 3)
  FLAGS.set_default('per_replica_batch', 1)
  FLAGS.set_default('seconds', 10.0)
  FLAGS.set_default('rounds', 1)
  app.run(main)
