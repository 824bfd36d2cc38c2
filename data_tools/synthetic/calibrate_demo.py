r"""Calibrates the demo dataset: can a tiny 3D CNN learn it supervised, and does it need motion to?

Run this before tuning CVRL pretraining on the demo data (the design notes are in the module docstring of
data_tools/synthetic/demo_dataset.py): if a supervised model cannot reach high accuracy within the CPU budget, no
self-supervised recipe will, and if a model that sees a single frame repeated does better than chance, the classes
leak through appearance and the demo would not show that the representation captures motion.

Two runs with identical model, budget and sampling:
  video:         8-frame clips at random start frames;
  single_frame:  one random frame repeated 8 times (the leakage check; should be at chance, 1 / num_classes).
Test accuracy averages the logits of `--num_eval_clips` clips evenly spaced over each video.

Videos are decoded straight from `<data_dir>/<split>/<class>/*.mp4` with PyAV (no TFRecords needed); class
indices are the sorted class folder names.

Usage:

  # The videos `make demo` rendered (demo_output/raw_videos):
  python -m data_tools.synthetic.calibrate_demo
  # Any data_tools.synthetic.demo_dataset --output_dir:
  python -m data_tools.synthetic.calibrate_demo --data_dir=DIR --train_seconds=120
"""
import json
import os
import time
from typing import Dict, List, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np

# TensorFlow enables its oneDNN kernels by default only on some CPUs; without them (e.g. on AMD EPYC without
# AVX-512) the Eigen gradient of Conv3D was measured ~200x slower (3.7 s vs 16 ms for one 3x5x5 layer on a batch of
# 32 8x32x32 clips), which makes CPU training of any 3D CNN impossible. Must be set before TensorFlow is imported.
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')

import tensorflow as tf  # pylint: disable=g-import-not-at-top
import tf_keras  # pylint: disable=g-import-not-at-top

from data_tools.synthetic import demo_dataset
from official_cvrl.utils import errors

MODES = ('video', 'single_frame')


def list_split(data_dir: str, split: str) -> Tuple[List[str], np.ndarray, List[str]]:
  """Video paths, labels and class names of one split of a folder-per-class dataset.

  Args:
    data_dir: dataset root holding `<split>/<class_name>/*.mp4`.
    split: sub-folder name.

  Returns:
    paths: sorted video paths; labels: int32 [N] class indices; class_names: sorted class folder names.
  """
  split_dir = os.path.join(data_dir, split)
  if not os.path.isdir(split_dir):
    raise errors.UserInputError(f'{split_dir} does not exist; generate the data first with '
                                f'`python -m data_tools.synthetic.demo_dataset --output_dir={data_dir}`.')
  class_names = sorted(n for n in os.listdir(split_dir) if os.path.isdir(os.path.join(split_dir, n)))
  paths, labels = [], []
  for index, name in enumerate(class_names):
    for file_name in sorted(os.listdir(os.path.join(split_dir, name))):
      if file_name.endswith(demo_dataset.VIDEO_EXTENSION):
        paths.append(os.path.join(split_dir, name, file_name))
        labels.append(index)
  if not paths:
    raise errors.UserInputError(f'No {demo_dataset.VIDEO_EXTENSION} videos under {split_dir}/<class>/.')
  return paths, np.asarray(labels, np.int32), class_names


def load_split(data_dir: str, split: str) -> Tuple[np.ndarray, np.ndarray, List[str]]:
  """Decodes a whole split into memory: uint8 videos [N, T, H, W, 3], int32 labels [N], class names."""
  paths, labels, class_names = list_split(data_dir, split)
  # In this process: ~7 ms per default-size video. Worker processes would each re-import this module and with it
  # TensorFlow (spawn), or fork a process that has TensorFlow loaded; neither is faster at this size.
  videos = [demo_dataset.decode_video(p) for p in paths]
  shapes = {v.shape for v in videos}
  if len(shapes) != 1:
    raise errors.UserInputError(f'Videos under {data_dir}/{split} differ in shape ({sorted(shapes)}); the '
                                'calibration needs equal-length, equal-size videos as the demo generator writes.')
  return np.stack(videos), labels, class_names


def build_model(num_classes: int, clip_shape: Sequence[int]) -> tf_keras.Model:
  """Tiny 3D CNN: three conv3d stages (16/32/64 channels) + global pooling + linear classifier.

  Args:
    num_classes: output logits.
    clip_shape: [T, H, W, 3] input clip shape.

  Returns:
    A Keras model mapping float clips [batch, T, H, W, 3] in [0, 1] to logits [batch, num_classes].
  """
  layers = tf_keras.layers
  inputs = tf_keras.Input(shape=tuple(clip_shape))
  x = inputs
  # Stem keeps full temporal resolution: the classes differ only in how content moves between frames.
  for filters, kernel, strides in ((16, (3, 5, 5), (1, 2, 2)), (32, (3, 3, 3), (1, 2, 2)), (64, (3, 3, 3), (2, 2, 2))):
    x = layers.Conv3D(filters, kernel, strides=strides, padding='same', use_bias=False)(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
  x = layers.GlobalAveragePooling3D()(x)
  return tf_keras.Model(inputs, layers.Dense(num_classes)(x))


def sample_clips(videos: np.ndarray, starts: np.ndarray, clip_length: int, frame_stride: int,
                 mode: str) -> np.ndarray:
  """Gathers one clip per video.

  Args:
    videos: uint8 [N, T, H, W, 3].
    starts: int [N] first frame of each clip.
    clip_length: frames per clip L.
    frame_stride: step between clip frames.
    mode: 'video' (consecutive strided frames) or 'single_frame' (frame `start` repeated L times).

  Returns:
    float32 clips [N, L, H, W, 3] in [0, 1].
  """
  steps = np.arange(clip_length) * frame_stride if mode == 'video' else np.zeros(clip_length, np.int64)
  frame_index = starts[:, None] + steps[None, :]
  clips = videos[np.arange(len(videos))[:, None], frame_index]
  return clips.astype(np.float32) / 255.0


def calibrate(train: Tuple[np.ndarray, np.ndarray], test: Tuple[np.ndarray, np.ndarray], num_classes: int,
              mode: str, train_seconds: float, batch_size: int = 32, clip_length: int = 8,
              frame_stride: int = 1, learning_rate: float = 2e-3, num_eval_clips: int = 3,
              seed: int = 0) -> Dict[str, float]:
  """Trains the tiny 3D CNN for a wall-clock budget and returns its test accuracy.

  Args:
    train: (uint8 videos [N, T, H, W, 3], int labels [N]).
    test: same for evaluation.
    num_classes: number of classes (chance = 1 / num_classes).
    mode: 'video' or 'single_frame' (see `sample_clips`).
    train_seconds: training budget in seconds (checked after every step).
    batch_size: clips per step.
    clip_length: frames per clip.
    frame_stride: step between clip frames.
    learning_rate: Adam learning rate.
    num_eval_clips: clips per test video, evenly spaced; their logits are averaged.
    seed: seeds weights and clip sampling.

  Returns:
    dict with test_accuracy, train_accuracy (last 20 steps), steps, seconds, chance and the test confusion
    matrix (rows: true class, columns: predicted class).
  """
  if mode not in MODES:
    raise errors.UserInputError(f'Unknown calibration mode {mode!r}; expected one of {MODES}.')
  train_videos, train_labels = train
  test_videos, test_labels = test
  num_frames = train_videos.shape[1]
  span = (clip_length - 1) * frame_stride + 1
  if span > num_frames or span > test_videos.shape[1]:
    raise errors.UserInputError(f'A clip spans {span} frames (clip_length={clip_length}, frame_stride='
                                f'{frame_stride}) but the videos have {num_frames}.')
  tf_keras.utils.set_random_seed(seed)
  rng = np.random.default_rng(seed)
  model = build_model(num_classes, (clip_length,) + train_videos.shape[2:])
  optimizer = tf_keras.optimizers.Adam(learning_rate)
  loss_fn = tf_keras.losses.SparseCategoricalCrossentropy(from_logits=True)

  @tf.function
  def train_step(clips, labels):
    with tf.GradientTape() as tape:
      logits = model(clips, training=True)
      loss = loss_fn(labels, logits)
    optimizer.apply_gradients(zip(tape.gradient(loss, model.trainable_variables), model.trainable_variables))
    return loss, tf.reduce_mean(tf.cast(tf.equal(tf.argmax(logits, -1, output_type=tf.int32), labels), tf.float32))

  started = time.perf_counter()
  steps, recent = 0, []
  while time.perf_counter() - started < train_seconds:
    index = rng.integers(len(train_videos), size=batch_size)
    starts = rng.integers(num_frames - span + 1, size=batch_size)
    clips = sample_clips(train_videos[index], starts, clip_length, frame_stride, mode)
    loss, accuracy = train_step(tf.constant(clips), tf.constant(train_labels[index]))
    steps += 1
    recent = (recent + [float(accuracy)])[-20:]
    if steps % 100 == 0:
      logging.info('[%s] step %d, %.0f s, loss %.3f, train accuracy (last 20 steps) %.3f', mode, steps,
                   time.perf_counter() - started, float(loss), np.mean(recent))
  seconds = time.perf_counter() - started

  @tf.function
  def predict(clips):
    return tf.nn.softmax(model(clips, training=False))

  test_frames = test_videos.shape[1]
  eval_starts = np.linspace(0, test_frames - span, num_eval_clips).round().astype(np.int64)
  probabilities = np.zeros((len(test_videos), num_classes))
  for begin in range(0, len(test_videos), 256):
    chunk = test_videos[begin:begin + 256]
    for start in eval_starts:
      clips = sample_clips(chunk, np.full(len(chunk), start), clip_length, frame_stride, mode)
      probabilities[begin:begin + len(chunk)] += predict(tf.constant(clips)).numpy()
  predictions = probabilities.argmax(-1)
  confusion = np.zeros((num_classes, num_classes), np.int64)
  np.add.at(confusion, (test_labels, predictions), 1)
  return dict(test_accuracy=float(np.mean(predictions == test_labels)), train_accuracy=float(np.mean(recent)),
              steps=steps, seconds=seconds, chance=1.0 / num_classes, confusion=confusion.tolist())


# Where `make demo` (official_cvrl.demo, stage 1) renders the videos.
DEFAULT_DATA_DIR = 'demo_output/raw_videos'


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string('data_dir', DEFAULT_DATA_DIR,
                      'Root of <split>/<class>/*.mp4: a data_tools.synthetic.demo_dataset --output_dir. The default '
                      'is where `make demo` renders the videos.')
  flags.DEFINE_string('train_split', 'train', 'Split to train on.')
  flags.DEFINE_string('test_split', 'test', 'Split to report accuracy on.')
  flags.DEFINE_list('modes', list(MODES), f'Runs to do, among {MODES}.')
  flags.DEFINE_float('train_seconds', 120.0, 'Wall-clock training budget per run.')
  flags.DEFINE_integer('batch_size', 32, 'Clips per training step.')
  flags.DEFINE_integer('clip_length', 8, 'Frames per clip.')
  flags.DEFINE_integer('frame_stride', 1, 'Step between the frames of a clip.')
  flags.DEFINE_float('learning_rate', 2e-3, 'Adam learning rate.')
  flags.DEFINE_integer('num_eval_clips', 3, 'Clips per test video, evenly spaced; logits averaged.')
  flags.DEFINE_integer('seed', 0, 'Seed of weights and clip sampling.')
  flags.DEFINE_string('output_json', None, 'Optional file to write the results to.')


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  if not os.path.isdir(f.data_dir):
    raise app.UsageError(f'--data_dir={f.data_dir} is not a folder. Render the demo videos first (`make demo`, or '
                         f'python -m data_tools.synthetic.demo_dataset --output_dir={f.data_dir}) or pass --data_dir.')
  try:
    started = time.perf_counter()
    train_videos, train_labels, class_names = load_split(f.data_dir, f.train_split)
    test_videos, test_labels, test_class_names = load_split(f.data_dir, f.test_split)
    if class_names != test_class_names:
      raise errors.UserInputError(f'Class folders of {f.train_split} and {f.test_split} under {f.data_dir} differ: '
                                  f'{class_names} vs {test_class_names}.')
    logging.info('Decoded %d train + %d test videos %s in %.1f s.', len(train_videos), len(test_videos),
                 train_videos.shape[1:], time.perf_counter() - started)
    results = {}
    for mode in f.modes:
      results[mode] = calibrate((train_videos, train_labels), (test_videos, test_labels), len(class_names), mode,
                                f.train_seconds, batch_size=f.batch_size, clip_length=f.clip_length,
                                frame_stride=f.frame_stride, learning_rate=f.learning_rate,
                                num_eval_clips=f.num_eval_clips, seed=f.seed)
      r = results[mode]
      print(f'{mode:>12}: test accuracy {r["test_accuracy"]:.1%} (chance {r["chance"]:.1%}), train accuracy '
            f'{r["train_accuracy"]:.1%}, {r["steps"]} steps of {f.batch_size} in {r["seconds"]:.0f} s', flush=True)
  except errors.UserInputError as e:
    raise app.UsageError(str(e)) from e
  if f.output_json:
    with open(f.output_json, 'w') as out:
      json.dump(results, out, indent=1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
