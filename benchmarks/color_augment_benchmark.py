r"""Cost of the on-device colour augmentation: the current `apply_color_params` vs the definition it replaced.

Three variants apply the same parameters to the same clips: colour jitter in a random order per clip, greyscale,
Gaussian blur, final clip to [0, 1].
  - "original": the definition as first written and as the float64 reference in the tests states it, run op by op
    as TensorFlow runs a graph on a CPU: four steps of brightness, contrast and an HSV round trip (tf.image) with
    identity parameters for the transforms a clip does not apply at that step, a depthwise-convolution blur of
    every clip (unblurred ones with a unit impulse), a final clip.
  - "xla_jitter": the same jitter and greyscale compiled with XLA, blur and clip still op by op (the previous
    state of `color_augment`).
  - "current": `color_augment.apply_color_params`.
Each round draws new parameters (all variants get the same ones), so the time averages over which clips draw a
blur or a jitter, as training does. Rounds alternate between the variants, so they see the same machine load; the
table reports medians of wall time and of the process's CPU time (all threads) per pair of clips, and the largest
difference between the current and the original outputs.

  python -m benchmarks.color_augment_benchmark --batch_pairs=2 --rounds=7
  python -m benchmarks.color_augment_benchmark --batch_pairs=64 --frames=8 --size=32 --norandom_order  # The demo.

Runs unchanged on a GPU host (the clips are placed on the default device; CPU time is then the host's).
"""
import os
import statistics
import time
from typing import Dict

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from official_cvrl.ops import color_augment

FLAGS = flags.FLAGS
flags.DEFINE_integer('batch_pairs', 2, 'Pairs of clips per batch (2 clips each).')
flags.DEFINE_integer('frames', 16, 'Frames per clip.')
flags.DEFINE_integer('size', 224, 'Frame height and width.')
flags.DEFINE_integer('rounds', 7, 'Timed calls per variant (alternating), each with newly drawn parameters.')
flags.DEFINE_bool('random_order', True, 'Jitter in a random order per clip (SimCLR, the paper experiments) or the '
                  'fixed order (the demo experiments).')

_NUM_JITTER_OPS = 4
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(_NUM_JITTER_OPS)


def _per_clip(values):
  return tf.reshape(values, [-1, 1, 1, 1, 1])


def _original_saturation_hue(videos, saturation_factor, hue_delta):
  hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(videos), axis=-1)
  hue = tf.math.floormod(hue + tf.reshape(hue_delta, [-1, 1, 1, 1]), 1.0)
  saturation = tf.clip_by_value(saturation * tf.reshape(saturation_factor, [-1, 1, 1, 1]), 0.0, 1.0)
  return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def _original_jitter(videos, params: Dict[str, tf.Tensor], random_order: bool):
  """The jitter as first written: at step i every clip applies the transform whose `jitter_step` is i."""

  def contrast(videos, factor):
    mean = tf.reduce_mean(videos, axis=[2, 3], keepdims=True)
    return (videos - mean) * _per_clip(factor) + mean

  if not random_order:
    videos = tf.clip_by_value(videos * _per_clip(params['brightness']), 0.0, 1.0)
    videos = tf.clip_by_value(contrast(videos, params['contrast']), 0.0, 1.0)
    return tf.clip_by_value(_original_saturation_hue(videos, params['saturation'], params['hue']), 0.0, 1.0)
  step_of_op = params['jitter_step']
  for step in range(_NUM_JITTER_OPS):
    def chosen(op, values, identity, step=step):
      return tf.where(tf.equal(step_of_op[:, op], step), values, identity)

    videos = tf.clip_by_value(videos * _per_clip(chosen(_BRIGHTNESS, params['brightness'], 1.0)), 0.0, 1.0)
    videos = tf.clip_by_value(contrast(videos, chosen(_CONTRAST, params['contrast'], 1.0)), 0.0, 1.0)
    videos = _original_saturation_hue(videos, chosen(_SATURATION, params['saturation'], 1.0),
                                      chosen(_HUE, params['hue'], 0.0))
    videos = tf.clip_by_value(videos, 0.0, 1.0)
  return videos


def _original_jitter_and_grayscale(videos, params, random_order):
  videos = _original_jitter(videos, params, random_order)
  gray = tf.image.rgb_to_grayscale(videos)
  return tf.where(_per_clip(params['grayscale']), tf.broadcast_to(gray, tf.shape(videos)), videos)


def _original_blur(videos, sigma):
  """Every clip's own kernel as a depthwise convolution, clips moved into channels: [T, H, W, N * C]."""
  radius = color_augment.blur_radius(videos.shape[2])
  shape = tf.shape(videos)
  num_clips, num_frames, height, width = shape[0], shape[1], shape[2], shape[3]
  channels = videos.shape[4]
  kernels = tf.repeat(color_augment.gaussian_kernels(sigma, radius), channels, axis=0)  # [N * C, K]
  stacked = tf.reshape(tf.transpose(videos, [1, 2, 3, 0, 4]), [num_frames, height, width, num_clips * channels])
  stacked = tf.pad(stacked, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode='REFLECT')
  vertical = tf.transpose(kernels)[:, tf.newaxis, :, tf.newaxis]
  horizontal = tf.transpose(kernels)[tf.newaxis, :, :, tf.newaxis]
  stacked = tf.nn.depthwise_conv2d(stacked, vertical, strides=[1, 1, 1, 1], padding='VALID')
  stacked = tf.nn.depthwise_conv2d(stacked, horizontal, strides=[1, 1, 1, 1], padding='VALID')
  stacked = tf.reshape(stacked, [num_frames, height, width, num_clips, channels])
  return tf.transpose(stacked, [3, 0, 1, 2, 4])


_xla_jitter_and_grayscale = tf.function(_original_jitter_and_grayscale, jit_compile=True)


def _original(videos, params, random_order):
  videos = _original_jitter_and_grayscale(videos, params, random_order)
  return tf.clip_by_value(_original_blur(videos, params['blur_sigma']), 0.0, 1.0)


def _xla_jitter(videos, params, random_order):
  videos = _xla_jitter_and_grayscale(videos, params, random_order)
  return tf.clip_by_value(_original_blur(videos, params['blur_sigma']), 0.0, 1.0)


def main(_):
  num_clips = 2 * FLAGS.batch_pairs
  order = FLAGS.random_order
  clips = tf.random.stateless_uniform([num_clips, FLAGS.frames, FLAGS.size, FLAGS.size, 3], seed=[0, 1])
  variants = {
      'original': tf.function(lambda v, p: _original(v, p, order)),
      'xla_jitter': tf.function(lambda v, p: _xla_jitter(v, p, order)),
      'current': tf.function(lambda v, p: color_augment.apply_color_params(v, p, random_order=order)),
  }
  warm_up = color_augment.sample_color_params(num_clips, jitter_random_order=order, seed=[2, 3])
  for fn in variants.values():
    fn(clips, warm_up).numpy()  # Trace / compile once.
  wall = {name: [] for name in variants}
  cpu = {name: [] for name in variants}
  max_diff, blurred, jittered = 0.0, 0, 0
  load = [os.getloadavg()[0]]
  for round_index in range(FLAGS.rounds):
    params = color_augment.sample_color_params(num_clips, jitter_random_order=order, seed=[2, 4 + round_index])
    blurred += int(tf.reduce_sum(tf.cast(params['blur_sigma'] > 0, tf.int32)))
    jittered += int(tf.reduce_sum(tf.cast(params['brightness'] != 1.0, tf.int32)))
    outputs = {}
    for name, fn in variants.items():
      start_cpu, start = time.process_time(), time.perf_counter()
      outputs[name] = fn(clips, params).numpy()
      wall[name].append(1e3 * (time.perf_counter() - start) / FLAGS.batch_pairs)
      cpu[name].append(1e3 * (time.process_time() - start_cpu) / FLAGS.batch_pairs)
    max_diff = max(max_diff, float(np.abs(outputs['current'] - outputs['original']).max()))
    load.append(os.getloadavg()[0])
  print(f'{os.cpu_count()} CPUs, 1-minute load average {min(load):.2f}-{max(load):.2f} during the run; '
        f'{num_clips} clips of {FLAGS.frames}x{FLAGS.size}x{FLAGS.size}, '
        f'{"random" if order else "fixed"} jitter order, {FLAGS.rounds} rounds: {blurred} of '
        f'{num_clips * FLAGS.rounds} clips blurred, {jittered} jittered; max |current - original| = {max_diff:.1e}')
  print('| variant | wall ms per pair (median) | CPU ms per pair (median) | wall per round | wall speed-up | '
        'CPU speed-up |')
  print('| --- | --- | --- | --- | --- | --- |')
  base_wall, base_cpu = statistics.median(wall['original']), statistics.median(cpu['original'])
  for name in variants:
    median_wall, median_cpu = statistics.median(wall[name]), statistics.median(cpu[name])
    print(f'| {name} | {median_wall:.1f} | {median_cpu:.1f} | {", ".join(f"{v:.0f}" for v in wall[name])} | '
          f'{base_wall / median_wall:.2f}x | {base_cpu / median_cpu:.2f}x |')


if __name__ == '__main__':
  app.run(main)
