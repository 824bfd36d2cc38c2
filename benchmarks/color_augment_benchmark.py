r"""Cost of the on-device colour augmentation: XLA-fused jitter (what training runs) vs the unfused graph.

Both variants apply the same parameters to the same clips (`color_augment.apply_color_params`): colour jitter in
a random order per clip, greyscale, Gaussian blur. "unfused" is the computation before the jitter was compiled
with XLA (every op its own pass over memory, as TensorFlow runs a graph on a CPU); "fused" is the current one.
Rounds alternate between the variants, so both see the same machine load; the table reports medians.

  python -m benchmarks.color_augment_benchmark --batch_pairs=2 --rounds=5
  python -m benchmarks.color_augment_benchmark --batch_pairs=64 --frames=8 --size=32 --norandom_order  # The demo.

Runs unchanged on a GPU host (the clips are placed on the default device).
"""
import os
import statistics
import time

from absl import app
from absl import flags
import tensorflow as tf

from official_cvrl.ops import color_augment

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch_pairs', 2, 'Pairs of clips per batch (2 clips each).')
flags.DEFINE_integer('frames', 16, 'Frames per clip.')
flags.DEFINE_integer('size', 224, 'Frame height and width.')
flags.DEFINE_integer('rounds', 5, 'Timed calls per variant (alternating).')
flags.DEFINE_bool('random_order', True, 'Jitter in a random order per clip (SimCLR, the paper experiments) or the '
                  'fixed order (the demo experiments).')


def _unfused(videos, params, random_order):
  videos = color_augment._jitter_and_grayscale_eager(videos, params, random_order)  # pylint: disable=protected-access
  videos = color_augment._gaussian_blur(videos, params['blur_sigma'])  # pylint: disable=protected-access
  return tf.clip_by_value(videos, 0.0, 1.0)


def main(_):
  num_clips = 2 * FLAGS.batch_pairs
  clips = tf.random.stateless_uniform([num_clips, FLAGS.frames, FLAGS.size, FLAGS.size, 3], seed=[0, 1])
  params = color_augment.sample_color_params(num_clips, jitter_random_order=FLAGS.random_order, seed=[2, 3])
  variants = {
      'unfused': tf.function(lambda v, p: _unfused(v, p, FLAGS.random_order)),
      'fused': tf.function(lambda v, p: color_augment.apply_color_params(v, p, random_order=FLAGS.random_order)),
  }
  outputs = {name: fn(clips, params).numpy() for name, fn in variants.items()}  # Trace / compile once.
  max_diff = float(abs(outputs['fused'] - outputs['unfused']).max())
  times = {name: [] for name in variants}
  load_start = os.getloadavg()[0]
  for _ in range(FLAGS.rounds):
    for name, fn in variants.items():
      start = time.perf_counter()
      fn(clips, params).numpy()
      times[name].append(1e3 * (time.perf_counter() - start) / FLAGS.batch_pairs)
  print(f'{os.cpu_count()} CPUs, load average {load_start:.2f} at start, {os.getloadavg()[0]:.2f} at end; '
        f'{num_clips} clips of {FLAGS.frames}x{FLAGS.size}x{FLAGS.size}, '
        f'{"random" if FLAGS.random_order else "fixed"} jitter order; max |fused - unfused| = {max_diff:.1e}')
  print('| variant | ms per pair (median) | per round | speed-up |')
  print('| --- | --- | --- | --- |')
  base = statistics.median(times['unfused'])
  for name, values in times.items():
    median = statistics.median(values)
    print(f'| {name} | {median:.1f} | {", ".join(f"{v:.0f}" for v in values)} | {base / median:.2f}x |')


if __name__ == '__main__':
  app.run(main)
