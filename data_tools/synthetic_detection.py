"""A tiny synthetic action-detection dataset in the AVA record format, for tests and the detection demo.

Each record is one keyframe of a short clip (`num_frames` frames, keyframe in the middle) of 1-2 "actors":
textured rectangles over noise whose actions are defined by motion only, so a single frame cannot tell them apart:

| class | name        | motion                                            |
| ----- | ----------- | ------------------------------------------------- |
| 0     | move_right  | the actor translates right (1-2 px per frame)      |
| 1     | move_left   | the actor translates left                          |
| 2     | bounce      | the actor oscillates vertically (period 6 frames)  |

An actor does a non-empty subset of {one horizontal move, bounce} (multi-label, as AVA's persons). Ground-truth
boxes are the actors' boxes at the keyframe; proposals are those boxes jittered by a few pixels with scores in
[0.85, 1], plus one background box scored 0.3 (below the evaluation threshold of 0.8).

    python -m data_tools.synthetic_detection --output_dir demo_output/detection_tfrecords

writes `train-00000-of-00004.tfrecord ...` (1024 keyframes) and `val-...` (256), plus `label_map.pbtxt`.
"""
import os
from typing import List, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from data_tools import ava

CLASS_NAMES = ('move_right', 'move_left', 'bounce')
_BOUNCE_AMPLITUDE = 4.0  # px.
_BOUNCE_PERIOD = 6.0  # frames.
_ACTIONS = ((0,), (1,), (2,), (0, 2), (1, 2))  # Allowed label sets of an actor.


def _actor_track(rng: np.random.Generator, labels: Sequence[int], num_frames: int, size: int
                 ) -> Tuple[np.ndarray, Tuple[int, int]]:
  """Top-left corners `[T, 2]` (y, x) of one actor over time and its (height, width)."""
  height, width = int(rng.integers(size // 5, size // 3)), int(rng.integers(size // 6, size // 4))
  speed = rng.uniform(1.0, 2.0) * (1 if 0 in labels else -1 if 1 in labels else 0)
  key = num_frames // 2
  y0 = rng.uniform(_BOUNCE_AMPLITUDE, size - height - _BOUNCE_AMPLITUDE)
  x_key = rng.uniform(0, size - width)
  t = np.arange(num_frames) - key
  x = np.clip(x_key + speed * t, 0, size - width)
  phase = rng.uniform(0, 2 * np.pi)
  y = y0 + (_BOUNCE_AMPLITUDE * np.sin(2 * np.pi * t / _BOUNCE_PERIOD + phase) if 2 in labels else 0.0 * t)
  return np.stack([y, x], axis=-1), (height, width)


def render_keyframe(rng: np.random.Generator, num_frames: int = 16, size: int = 64
                    ) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, ...]]]:
  """One synthetic clip.

  Returns:
    frames: uint8 `[num_frames, size, size, 3]`.
    boxes: float32 `[A, 4]` normalised `[ymin, xmin, ymax, xmax]` of the actors at the keyframe.
    labels: the class indices of each actor.
  """
  frames = rng.normal(0.25, 0.06, size=(num_frames, size, size, 3))
  boxes, labels = [], []
  for _ in range(int(rng.integers(1, 3))):
    actions = _ACTIONS[int(rng.integers(len(_ACTIONS)))]
    track, (height, width) = _actor_track(rng, actions, num_frames, size)
    colour = rng.uniform(0.55, 1.0, size=3)
    stripes = 0.8 + 0.2 * (np.arange(width) // 2 % 2)  # A texture, so that motion is visible inside the box.
    for f, (y, x) in enumerate(track):
      yi, xi = int(round(y)), int(round(x))
      frames[f, yi:yi + height, xi:xi + width] = colour * stripes[None, :, None]
    y, x = track[num_frames // 2]
    boxes.append([y / size, x / size, (y + height) / size, (x + width) / size])
    labels.append(tuple(actions))
  frames = np.clip(frames * 255.0, 0, 255).astype(np.uint8)
  return frames, np.clip(np.array(boxes, np.float32), 0.0, 1.0), labels


def make_record(rng: np.random.Generator, video_id: str, num_frames: int = 16, size: int = 64) -> bytes:
  """A serialized detection SequenceExample of one synthetic keyframe (see `ava.make_detection_example`)."""
  frames, boxes, labels = render_keyframe(rng, num_frames, size)
  jitter = rng.uniform(-2.0, 2.0, size=boxes.shape) / size
  proposals = np.clip(boxes + jitter, 0.0, 1.0)
  background = np.array([[0.0, 0.0, 0.2, 0.2]], np.float32)
  proposal_scores = np.concatenate([rng.uniform(0.85, 1.0, len(boxes)), [0.3]])
  example = ava.make_detection_example(
      frames=frames, keyframe_index=num_frames // 2, video_id=video_id, timestamp=0, fps=float(num_frames),
      boxes=boxes, box_labels=labels, proposals=np.concatenate([proposals, background]),
      proposal_scores=proposal_scores)
  return example.SerializeToString()


def write_split(output_dir: str, split: str, num_keyframes: int, num_shards: int, seed: int,
                num_frames: int = 16, size: int = 64) -> List[str]:
  """Writes `num_keyframes` records into `num_shards` shards `<split>-SSSSS-of-NNNNN.tfrecord`; returns paths."""
  tf.io.gfile.makedirs(output_dir)
  rng = np.random.default_rng([seed, sum(split.encode())])
  paths = [os.path.join(output_dir, f'{split}-{i:05d}-of-{num_shards:05d}.tfrecord') for i in range(num_shards)]
  writers = [tf.io.TFRecordWriter(p) for p in paths]
  try:
    for i in range(num_keyframes):
      writers[i % num_shards].write(make_record(rng, f'{split}_{i:05d}', num_frames, size))
  finally:
    for writer in writers:
      writer.close()
  return paths


def label_map_text() -> str:
  """The synthetic classes as an AVA-style label map (ids 1..3, in class-index order)."""
  return ''.join(f'item {{\n  name: "{name}"\n  id: {i + 1}\n}}\n' for i, name in enumerate(CLASS_NAMES))


def generate(output_dir: str, num_train: int = 1024, num_val: int = 256, seed: int = 0) -> None:
  """Writes both splits and `label_map.pbtxt` to `output_dir`."""
  write_split(output_dir, 'train', num_train, 4, seed)
  write_split(output_dir, 'val', num_val, 1, seed)
  with tf.io.gfile.GFile(os.path.join(output_dir, 'label_map.pbtxt'), 'w') as f:
    f.write(label_map_text())


def main(argv: Sequence[str]) -> None:
  del argv
  generate(flags.FLAGS.output_dir, flags.FLAGS.num_train, flags.FLAGS.num_val, flags.FLAGS.seed)
  print(f'Wrote {flags.FLAGS.num_train} train and {flags.FLAGS.num_val} val keyframes to {flags.FLAGS.output_dir}.')


if __name__ == '__main__':
  flags.DEFINE_string('output_dir', 'demo_output/detection_tfrecords', 'Where to write the records.')
  flags.DEFINE_integer('num_train', 1024, 'Training keyframes.')
  flags.DEFINE_integer('num_val', 256, 'Validation keyframes.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  app.run(main)
