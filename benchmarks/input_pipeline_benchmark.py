r"""Throughput of the CVRL pretraining input pipeline against Model Garden's video_ssl parser and a decode floor.

Writes Kinetics-like TFRecords (short side 256, 340x256 JPEG frames of moving smooth patterns plus noise, ~20-30 KB
each, 150 frames per video) unless --data_dir already holds them, then measures on the same files, with the same
tf.data settings (parallel map AUTOTUNE, batch, prefetch AUTOTUNE), pairs of clips per second for:
  ours          `ssl_input.Parser`: 2 x 16 frames at stride 2, 224x224, random crop + flip, uint8 out
                (colour jitter / greyscale / blur run later in the train step, on the accelerator);
  ours_device_resize
                the same parser with `canvas_size=(256, 340)` (`task.train_data.device_resize_canvas`): the CPU
                decodes the crop windows and ships them on the canvas; the resize and flip run in the train
                step (`ops.window_resize.resize_windows`), timed on this CPU at the end like the augmentation;
  model_garden  `official.projects.video_ssl` SSL parser as its pretrain task builds it (full decode, crop,
                resize, colour jitter and blur on the CPU, float32 out);
  decode_floor  decoding the 32 full frames a pair needs, nothing else.
It also times `window_resize.resize_windows` and `color_augment.augment_clips` on the CPU for one batch: what the
train step adds when it runs on a CPU.

Usage:
  python -m benchmarks.input_pipeline_benchmark --num_videos=24 --seconds=30 --data_dir=/tmp/cvrl_bench
"""
import glob
import os
import resource
import statistics
import tempfile
import time
from typing import Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from data_tools import sequence_example
from official.projects.video_ssl.configs import video_ssl as video_ssl_cfg
from official.projects.video_ssl.dataloaders import video_ssl_input
from official_cvrl.dataloaders import feature_keys
from official_cvrl.dataloaders import ssl_input
from official_cvrl.dataloaders import video_decoder
from official_cvrl.ops import color_augment
from official_cvrl.ops import temporal_sampling
from official_cvrl.ops import window_resize

FLAGS = flags.FLAGS
flags.DEFINE_integer('num_videos', 24, 'Videos to write (when --data_dir has none).')
flags.DEFINE_integer('frames_per_video', 150, 'Frames per written video.')
flags.DEFINE_float('seconds', 30.0, 'Measured seconds per pipeline and round (after warm-up).')
flags.DEFINE_integer('rounds', 2, 'Rounds; pipelines are interleaved per round and the median is reported.')
flags.DEFINE_integer('batch_size', 8, 'Pairs per batch.')
flags.DEFINE_string('data_dir', None, 'Where the TFRecords are (written there if absent); default: a temp dir.')

_HEIGHT, _WIDTH = 256, 340
_CLIP_FRAMES, _STRIDE, _CROP = 16, 2, 224
_FILE_PATTERN = 'bench-*.tfrecord'
_VIDEOS_PER_FILE = 4


def _video_frames(rng: np.random.Generator, num_frames: int) -> np.ndarray:
  """Smooth colour patterns drifting over time, plus sensor-like noise: JPEG sizes like real 340x256 frames."""
  yy, xx = np.mgrid[0:_HEIGHT, 0:_WIDTH].astype(np.float32)
  freq = rng.uniform(0.01, 0.05, (3, 2))
  phase = rng.uniform(0, 2 * np.pi, 3)
  velocity = rng.uniform(-2.0, 2.0, 2)
  frames = np.empty((num_frames, _HEIGHT, _WIDTH, 3), np.uint8)
  for t in range(num_frames):
    dy, dx = velocity * t
    channels = [128 + 100 * np.sin(freq[c, 0] * (xx + dx) + phase[c]) * np.cos(freq[c, 1] * (yy + dy) - phase[c])
                for c in range(3)]
    noisy = np.stack(channels, -1) + rng.normal(0, 7, (_HEIGHT, _WIDTH, 3)).astype(np.float32)
    frames[t] = np.clip(noisy, 0, 255)
  return frames


def write_dataset(data_dir: str, num_videos: int, frames_per_video: int) -> float:
  """Writes the benchmark TFRecords; returns the mean JPEG size in KB."""
  rng = np.random.default_rng(0)
  sizes = []
  for shard in range(0, num_videos, _VIDEOS_PER_FILE):
    path = os.path.join(data_dir, f'bench-{shard // _VIDEOS_PER_FILE:05d}.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
      for index in range(shard, min(shard + _VIDEOS_PER_FILE, num_videos)):
        encoded = [sequence_example.encode_jpeg(f) for f in _video_frames(rng, frames_per_video)]
        sizes.extend(len(e) for e in encoded)
        example = sequence_example.make_sequence_example(
            encoded, video_id=f'bench/{index:04d}', height=_HEIGHT, width=_WIDTH, fps=25.0, source_fps=25.0,
            label_indices=[index % 400])
        writer.write(example.SerializeToString())
  return float(np.mean(sizes)) / 1024


def _mean_jpeg_kb(files) -> float:
  record = next(iter(tf.data.TFRecordDataset(files[:1])))
  frames = video_decoder.Decoder().decode(record)[feature_keys.IMAGE_KEY]
  return float(tf.reduce_mean(tf.cast(tf.strings.length(frames), tf.float32))) / 1024


def _pipeline(files, decode_fn, parse_fn, postprocess_fn=None, batch_fn=None) -> tf.data.Dataset:
  """The tf.data settings shared by every measured pipeline (`batch_fn`: batching other than plain `batch`)."""
  dataset = tf.data.TFRecordDataset(files).repeat().shuffle(len(files) * _VIDEOS_PER_FILE, seed=0)
  dataset = dataset.map(decode_fn, num_parallel_calls=tf.data.AUTOTUNE)
  dataset = dataset.map(parse_fn, num_parallel_calls=tf.data.AUTOTUNE)
  if batch_fn is None:
    dataset = dataset.batch(FLAGS.batch_size, drop_remainder=True)
  else:
    dataset = batch_fn(dataset)
  if postprocess_fn is not None:
    dataset = dataset.map(postprocess_fn, num_parallel_calls=tf.data.AUTOTUNE)
  return dataset.prefetch(tf.data.AUTOTUNE)


def ours_pipeline(files) -> tf.data.Dataset:
  parser = ssl_input.Parser(num_frames=_CLIP_FRAMES, temporal_stride=_STRIDE, crop_size=_CROP)
  return _pipeline(files, video_decoder.Decoder().decode, parser.parse_fn(True), ssl_input.PostBatchProcessor())


def ours_device_resize_pipeline(files) -> tf.data.Dataset:
  parser = ssl_input.Parser(num_frames=_CLIP_FRAMES, temporal_stride=_STRIDE, crop_size=_CROP,
                            canvas_size=(_HEIGHT, _WIDTH))
  return _pipeline(files, video_decoder.Decoder().decode, parser.parse_fn(True), ssl_input.PostBatchProcessor(),
                   batch_fn=parser.canvas_batch_fn(FLAGS.batch_size))


def model_garden_pipeline(files) -> tf.data.Dataset:
  """Model Garden's SSL parser, configured as `video_ssl_pretrain_kinetics400` configures its train data."""
  params = video_ssl_cfg.DataConfig(
      is_ssl=True, is_training=True, feature_shape=(_CLIP_FRAMES, _CROP, _CROP, 3), temporal_stride=_STRIDE,
      num_classes=400, global_batch_size=FLAGS.batch_size)
  parser = video_ssl_input.Parser(input_params=params)
  return _pipeline(files, video_ssl_input.Decoder().decode, parser.parse_fn(True),
                   video_ssl_input.PostBatchProcessor(params))


def decode_floor_pipeline(files) -> tf.data.Dataset:
  """Only the unavoidable work: decode the 32 full frames of two clips (no crop, resize or augmentation)."""
  span = (_CLIP_FRAMES - 1) * _STRIDE + 1

  def decode_pair(decoded):
    encoded = decoded[feature_keys.IMAGE_KEY]
    num_frames = tf.shape(encoded)[0]
    starts = temporal_sampling.sample_pair_start_indices(num_frames, span)
    indices = tf.concat([temporal_sampling.clip_frame_indices(s, _CLIP_FRAMES, _STRIDE, num_frames)
                         for s in tf.unstack(starts)], axis=0)
    frames = tf.map_fn(lambda e: tf.io.decode_jpeg(e, channels=3), tf.gather(encoded, indices),
                       fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
    return tf.ensure_shape(frames, [2 * _CLIP_FRAMES, None, None, 3])

  return _pipeline(files, video_decoder.Decoder().decode, decode_pair)


def _process_cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def measure(dataset: tf.data.Dataset, seconds: float) -> Tuple[float, float]:
  """Pairs per wall-clock second and per CPU-second of this process, over `seconds` after two warm-up batches.

  Other processes on a shared machine change the wall-clock rate from run to run; the work per pair, and so the
  pairs per CPU-second, depends much less on them.
  """
  iterator = iter(dataset)
  for _ in range(2):
    next(iterator)
  batches = 0
  start, start_cpu = time.perf_counter(), _process_cpu_seconds()
  while time.perf_counter() - start < seconds:
    next(iterator)
    batches += 1
  pairs = batches * FLAGS.batch_size
  return pairs / (time.perf_counter() - start), pairs / (_process_cpu_seconds() - start_cpu)


def _time_per_pair(fn, args, batch_pairs: int, repeats: int) -> float:
  """Milliseconds per pair of `fn(*args)` in graph mode, median of `repeats` after tracing."""
  fn = tf.function(fn)
  fn(*args).numpy()  # Trace.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    fn(*args).numpy()
    times.append(time.perf_counter() - start)
  return 1e3 * statistics.median(times) / batch_pairs


def time_color_augment(batch_pairs: int, repeats: int = 3) -> float:
  """Milliseconds of `augment_clips` on the CPU per pair (two clips), graph mode, median of `repeats`."""
  clips = tf.random.stateless_uniform([2 * batch_pairs, _CLIP_FRAMES, _CROP, _CROP, 3], seed=[0, 1])
  return _time_per_pair(color_augment.augment_clips, (clips,), batch_pairs, repeats)


def time_device_resize(files, batch_pairs: int, repeats: int = 3) -> float:
  """Milliseconds of `resize_windows` on the CPU per pair, on a batch of real windows of the benchmark data."""
  features, _ = next(iter(ours_device_resize_pipeline(files)))
  count = 2 * batch_pairs
  args = (features['image'][:count], features['window_size'][:count], features['flip'][:count])
  return _time_per_pair(lambda *a: window_resize.resize_windows(*a, _CROP), args, batch_pairs, repeats)


def main(_):
  data_dir = FLAGS.data_dir or tempfile.mkdtemp(prefix='cvrl_input_bench_')
  tf.io.gfile.makedirs(data_dir)
  files = sorted(glob.glob(os.path.join(data_dir, _FILE_PATTERN)))
  if not files:
    print(f'Writing {FLAGS.num_videos} videos x {FLAGS.frames_per_video} frames to {data_dir} ...')
    write_dataset(data_dir, FLAGS.num_videos, FLAGS.frames_per_video)
    files = sorted(glob.glob(os.path.join(data_dir, _FILE_PATTERN)))
  print(f'{len(files)} files in {data_dir}, mean JPEG size {_mean_jpeg_kb(files):.1f} KB, '
        f'{os.cpu_count()} CPUs, load average at start {os.getloadavg()[0]:.2f}')

  pipelines = {'ours': ours_pipeline, 'ours_device_resize': ours_device_resize_pipeline,
               'model_garden': model_garden_pipeline, 'decode_floor': decode_floor_pipeline}
  wall = {name: [] for name in pipelines}
  per_cpu = {name: [] for name in pipelines}
  for round_index in range(FLAGS.rounds):
    for name, build in pipelines.items():
      rate, cpu_rate = measure(build(files), FLAGS.seconds)
      wall[name].append(rate)
      per_cpu[name].append(cpu_rate)
      print(f'round {round_index + 1} {name:>18}: {rate:7.2f} pairs/s, {cpu_rate:6.2f} pairs/CPU-s')
  wall_median = {name: statistics.median(rates) for name, rates in wall.items()}
  cpu_median = {name: statistics.median(rates) for name, rates in per_cpu.items()}

  print(f'\nload average at end {os.getloadavg()[0]:.2f}')
  print('| pipeline | pairs/s (median) | pairs/s per round | pairs per CPU-second (median) '
        '| vs Model Garden (wall / CPU) | vs decode floor (wall / CPU) |')
  print('| --- | --- | --- | --- | --- | --- |')
  for name in pipelines:
    rounds = ', '.join(f'{r:.2f}' for r in wall[name])
    print(f'| {name} | {wall_median[name]:.2f} | {rounds} | {cpu_median[name]:.2f} '
          f'| {wall_median[name] / wall_median["model_garden"]:.1f}x / '
          f'{cpu_median[name] / cpu_median["model_garden"]:.1f}x '
          f'| {100 * wall_median[name] / wall_median["decode_floor"]:.0f}% / '
          f'{100 * cpu_median[name] / cpu_median["decode_floor"]:.0f}% |')
  resize_ms = time_device_resize(files, batch_pairs=min(2, FLAGS.batch_size))
  print(f'\nresize_windows on this CPU (graph mode, 2 pairs of 16-frame windows on the {_HEIGHT}x{_WIDTH} canvas): '
        f'{resize_ms:.1f} ms per pair, the train-step work ours_device_resize moved out of the pipeline')
  ms_per_pair = time_color_augment(batch_pairs=2)
  print(f'\naugment_clips on this CPU (graph mode, 2 pairs of 16x224x224 clips): {ms_per_pair:.0f} ms per pair '
        f'= {1e3 / ms_per_pair:.2f} pairs/s if it ran in the CPU pipeline')


if __name__ == '__main__':
  app.run(main)
