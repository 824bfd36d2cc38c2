"""A synthetic action-detection dataset in the AVA record format, for tests and the detection demo.

Each record is one keyframe (the middle frame of a `num_frames` clip) of a scene with 1-3 "actors": the objects
of the embedded demo dataset (`data_tools.synthetic.demo_dataset`: same shapes, textures, colours and pixel sizes), each
doing one of its eight motion actions, so the detection classes are the demo's classes and an action can only
be told from the motion, never from one frame:

  move_000deg ... move_300deg   straight-line motion, one of six directions 60 degrees apart, 1.0-1.6 px/frame;
  rotate_ccw / rotate_cw        rotation in place, 0.15-0.25 rad/frame.

Unlike the classification demo, actors do not wrap around the frame edges (their whole track stays in view),
several share a scene and may overlap (partial occlusion), and about half of the scenes also hold a still
"bystander" object that does none of the actions. Ground-truth boxes are the actors' full (amodal) boxes at the
keyframe. Proposals imitate a person detector: every actor's and bystander's box jittered by up to 2 px with a
score in [0.85, 1] (the bystander is a proposal without ground truth: scoring it high for any action is a false
positive), plus one background box scored 0.3, below the evaluation threshold of 0.8.

    python -m data_tools.synthetic.synthetic_detection --output_dir demo_output/detection_tfrecords

writes `train-0000S-of-00004.tfrecord` (--num_train keyframes), `val-00000-of-00001.tfrecord` (--num_val) and
`label_map.pbtxt`. To try the real AVA toolchain instead, `--format=ava_movies` writes the same kind of scenes as
raw mp4 movies with AVA-style annotation, proposal and label-map files, which `data_tools.ava` converts
(docs/action_detection.md has the commands). Every file is written under a temporary name and renamed when
complete. Output is deterministic given --seed; train and val come from disjoint random streams.
"""
import contextlib
import dataclasses
import os
from typing import List, Optional, Sequence, Tuple

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from data_tools import ava
from data_tools.synthetic import demo_dataset
from data_tools.synthetic import portable_math as pm
from data_tools import shards
from official_cvrl.utils import errors

CLASS_NAMES = demo_dataset.CLASS_NAMES
_TRANSLATION_SPEED = (1.0, 1.6)  # px/frame, as in the demo videos.
_ROTATION_SPEED = (0.15, 0.25)  # rad/frame.
_NOISE_STD = 0.02
_MIN_CENTRE_DISTANCE = 0.8  # Actors' keyframe centres are at least this fraction of their radii sum apart.
_BYSTANDER_PROBABILITY = 0.5
_PLACEMENT_ATTEMPTS = 200


@dataclasses.dataclass(frozen=True)
class Actor:
  """One object of a scene: its look, its class (None for a still bystander) and its track."""
  appearance: demo_dataset.Appearance
  class_index: Optional[int]
  positions: np.ndarray  # [T, 2] (x, y) centre, y pointing down.
  angles: np.ndarray  # [T] orientation, radians anticlockwise on screen.


def _track(rng: np.random.Generator, class_index: Optional[int], num_frames: int, keyframe_centre: np.ndarray
           ) -> Tuple[np.ndarray, np.ndarray]:
  """Positions [T, 2] and angles [T] of an actor centred at `keyframe_centre` on the keyframe."""
  steps = (np.arange(num_frames) - num_frames // 2).astype(np.float64)
  angle0 = rng.uniform(0.0, 2 * np.pi)
  still = np.tile(keyframe_centre, (num_frames, 1))
  if class_index is None:
    return still, np.full(num_frames, angle0)
  name = CLASS_NAMES[class_index]
  if name.startswith('rotate_'):
    sign = 1.0 if name == 'rotate_ccw' else -1.0
    return still, angle0 + sign * rng.uniform(*_ROTATION_SPEED) * steps
  direction = np.deg2rad(float(name[len('move_'):len('move_') + 3]))
  velocity = rng.uniform(*_TRANSLATION_SPEED) * np.array([pm.cos(direction), -pm.sin(direction)])
  return keyframe_centre + steps[:, None] * velocity, np.full(num_frames, angle0)


def _in_view(positions: np.ndarray, radius: float, size: int) -> bool:
  return bool(np.all(positions >= radius) and np.all(positions <= size - radius))


def sample_scene(rng: np.random.Generator, num_frames: int = 16, size: int = 64,
                 max_actors: int = 3) -> List[Actor]:
  """Draws 1-`max_actors` acting objects (and maybe a bystander) whose tracks stay inside the frame."""
  num_actors = int(rng.integers(1, max_actors + 1))
  classes: List[Optional[int]] = [int(c) for c in rng.integers(len(CLASS_NAMES), size=num_actors)]
  if rng.uniform() < _BYSTANDER_PROBABILITY:
    classes.append(None)
  actors: List[Actor] = []
  for class_index in classes:
    appearance = demo_dataset.sample_appearance(rng, scale=1.0)
    radius = appearance.radius
    for _ in range(_PLACEMENT_ATTEMPTS):
      centre = rng.uniform(radius, size - radius, size=2)
      positions, angles = _track(rng, class_index, num_frames, centre)
      apart = all(pm.hypot(*(centre - other.positions[num_frames // 2])) >=
                  _MIN_CENTRE_DISTANCE * (radius + other.appearance.radius) for other in actors)
      if apart and _in_view(positions, radius, size):
        actors.append(Actor(appearance, class_index, positions, angles))
        break
  if not any(actor.class_index is not None for actor in actors):  # Only when size is far too small.
    raise ValueError(f'Frames of {size} px cannot hold an actor moving for {num_frames} frames.')
  return actors


def render_scene(rng: np.random.Generator, actors: Sequence[Actor], num_frames: int, size: int
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """Frames uint8 [T, S, S, 3] (actors drawn in order, later ones in front) and each actor's box [A, 4].

  Boxes are normalised [ymin, xmin, ymax, xmax] of the pixels the actor covers (alpha >= 0.5) on the keyframe,
  whether or not another actor hides them.
  """
  look = demo_dataset.sample_appearance(rng, scale=1.0)  # Only the background fields are used.
  pixels = np.arange(size, dtype=np.float64) + 0.5
  k = 2 * np.pi / look.grating_period
  phase = k * pm.cos(look.grating_angle) * pixels[None, :] + k * pm.sin(look.grating_angle) * pixels[:, None]
  background = (np.asarray(look.background_colour, np.float32) +
                (look.grating_contrast * pm.sin(phase + look.grating_phase)).astype(np.float32)[..., None])
  frames = np.broadcast_to(background, (num_frames, size, size, 3)).copy()
  boxes = []
  for actor in actors:
    dx = (pixels[None, None, :] - actor.positions[:, :1, None]).astype(np.float32)  # [T, 1, S]
    dy = -(pixels[None, :, None] - actor.positions[:, 1:, None]).astype(np.float32)  # [T, S, 1], y up.
    alpha, colour = demo_dataset.object_layer(actor.appearance, dx, dy, actor.angles)
    frames += alpha * (colour - frames)
    rows, cols = np.nonzero(alpha[num_frames // 2, ..., 0] >= 0.5)
    boxes.append([rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
  frames += np.float32(_NOISE_STD) * rng.standard_normal(size=frames.shape, dtype=np.float32)
  frames = np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
  return frames, np.asarray(boxes, np.float32).reshape(-1, 4) / size


def render_keyframe(rng: np.random.Generator, num_frames: int = 16, size: int = 64
                    ) -> Tuple[np.ndarray, np.ndarray, List[Tuple[int, ...]], np.ndarray]:
  """One synthetic clip.

  Returns:
    frames: uint8 `[num_frames, size, size, 3]`.
    boxes: float32 `[A, 4]` normalised `[ymin, xmin, ymax, xmax]` of the acting objects at the keyframe.
    labels: the class indices of each acting object.
    bystander_boxes: float32 `[B, 4]` boxes of the still objects (no action, no ground truth).
  """
  actors = sample_scene(rng, num_frames, size)
  frames, all_boxes = render_scene(rng, actors, num_frames, size)
  acting = np.array([actor.class_index is not None for actor in actors])
  labels = [(actor.class_index,) for actor in actors if actor.class_index is not None]
  return frames, all_boxes[acting], labels, all_boxes[~acting]


def detector_proposals(rng: np.random.Generator, boxes: np.ndarray, bystanders: np.ndarray, size: int
                       ) -> Tuple[np.ndarray, np.ndarray]:
  """What a person detector would report: every object's box moved by up to 2 px with a confident score, and
  one background box scored 0.3 (below the evaluation threshold). Returns boxes `[P, 4]` and scores `[P]`."""
  people = np.concatenate([boxes, bystanders])
  proposals = np.clip(people + rng.uniform(-2.0, 2.0, size=people.shape) / size, 0.0, 1.0)
  background = np.array([[0.0, 0.0, 0.2, 0.2]], np.float32)
  scores = np.concatenate([rng.uniform(0.85, 1.0, len(people)), [0.3]])
  return np.concatenate([proposals, background]).astype(np.float32), scores.astype(np.float32)


def make_record(rng: np.random.Generator, video_id: str, num_frames: int = 16, size: int = 64) -> bytes:
  """A serialized detection SequenceExample of one synthetic keyframe (see `ava.make_detection_example`)."""
  frames, boxes, labels, bystanders = render_keyframe(rng, num_frames, size)
  proposals, proposal_scores = detector_proposals(rng, boxes, bystanders, size)
  example = ava.make_detection_example(
      frames=frames, keyframe_index=num_frames // 2, video_id=video_id, timestamp=0, fps=25.0,
      boxes=boxes, box_labels=labels, proposals=proposals, proposal_scores=proposal_scores)
  return example.SerializeToString()


def write_split(output_dir: str, split: str, num_keyframes: int, num_shards: int, seed: int,
                num_frames: int = 16, size: int = 64) -> List[str]:
  """Writes `num_keyframes` records into `num_shards` shards `<split>-SSSSS-of-NNNNN.tfrecord`; returns paths.

  Shards are written under a temporary name and renamed at the end, so an interrupted run leaves no shard that
  a training job would read as complete.
  """
  rng = np.random.default_rng([seed, sum(split.encode())])
  paths = [os.path.join(output_dir, shards.shard_name(split, i, num_shards)) for i in range(num_shards)]
  state_dir = os.path.join(output_dir, shards.STATE_DIR_NAME)
  try:
    with contextlib.ExitStack() as stack:  # Publishes every shard on success, deletes them all on an error.
      writers = [stack.enter_context(shards.AtomicTFRecordWriter(path, state_dir)) for path in paths]
      for i in range(num_keyframes):
        writers[i % num_shards].write(make_record(rng, f'{split}_{i:05d}', num_frames, size))
  finally:
    if tf.io.gfile.isdir(state_dir) and not tf.io.gfile.listdir(state_dir):
      tf.io.gfile.rmtree(state_dir)
  return paths


def _csv_box(box: np.ndarray) -> str:
  ymin, xmin, ymax, xmax = (float(v) for v in box)
  return f'{xmin:.3f},{ymin:.3f},{xmax:.3f},{ymax:.3f}'  # AVA's column order: x1, y1, x2, y2.


def render_movie(rng: np.random.Generator, video_id: str, seconds: int, fps: int, size: int
                 ) -> Tuple[np.ndarray, List[str], List[str]]:
  """A movie of one-second scenes, each centred on a whole second, and its AVA annotation / proposal rows.

  Scene k fills frames `[k * fps - fps // 2, k * fps + fps // 2)`; keyframes are seconds 1..`seconds` (scene 0 is
  cut in half and not annotated), so the clip `data_tools.ava` stores around second k (`--fps=<fps>`,
  `--num_frames` x `--temporal_stride` = fps) is exactly scene k.

  Returns:
    frames uint8 `[(seconds + 1) * fps - fps // 2, size, size, 3]`, annotation CSV rows
    (`video_id,timestamp,x1,y1,x2,y2,action_id,person_id`; action ids are class index + 1) and proposal rows
    (`video_id,timestamp,x1,y1,x2,y2,,score`).
  """
  scenes, annotations, proposals = [], [], []
  for second in range(seconds + 1):
    frames, boxes, labels, bystanders = render_keyframe(rng, fps, size)
    scenes.append(frames)
    boxes_out, scores = detector_proposals(rng, boxes, bystanders, size)
    if second == 0:
      continue
    for person, (box, actions) in enumerate(zip(boxes, labels)):
      annotations += [f'{video_id},{second:04d},{_csv_box(box)},{action + 1},{person}' for action in actions]
    proposals += [f'{video_id},{second:04d},{_csv_box(box)},,{score:.3f}' for box, score in zip(boxes_out, scores)]
  return np.concatenate(scenes)[fps // 2:], annotations, proposals


def _write_lines(path: str, lines: Sequence[str]) -> None:
  shards.write_text_atomically(path, ''.join(line + '\n' for line in lines), os.path.dirname(path))


def write_ava_movies(output_dir: str, num_train_movies: int = 8, num_val_movies: int = 4, seconds: int = 16,
                     seed: int = 0, fps: int = 16, size: int = 64) -> None:
  """Writes synthetic data in AVA's raw layout, for trying `data_tools.ava` without downloading AVA.

  Layout: `movies/synth_{train,val}_NNN.mp4` (H.264), `ava_train.csv`, `ava_val.csv` (annotations),
  `ava_val_predicted_boxes.csv` (person proposals) and `label_map.pbtxt` (action ids 1..8). Every file is
  written under a temporary name and renamed, so an interrupted run leaves no truncated movie or CSV.
  """
  movies_dir = os.path.join(output_dir, 'movies')
  os.makedirs(movies_dir, exist_ok=True)
  for split, count in (('train', num_train_movies), ('val', num_val_movies)):
    rng = np.random.default_rng([seed, sum(split.encode()), 0xa7a])
    annotations, proposals = [], []
    for index in range(count):
      video_id = f'synth_{split}_{index:03d}'
      frames, annotation_rows, proposal_rows = render_movie(rng, video_id, seconds, fps, size)
      partial = os.path.join(movies_dir, f'.{video_id}.mp4.partial')
      demo_dataset.encode_video(frames, partial, fps=fps, crf=12)
      os.replace(partial, os.path.join(movies_dir, f'{video_id}.mp4'))
      annotations += annotation_rows
      proposals += proposal_rows
    _write_lines(os.path.join(output_dir, f'ava_{split}.csv'), annotations)
    if split == 'val':
      _write_lines(os.path.join(output_dir, 'ava_val_predicted_boxes.csv'), proposals)
  _write_lines(os.path.join(output_dir, 'label_map.pbtxt'), label_map_text().splitlines())


def label_map_text() -> str:
  """The synthetic classes as an AVA-style label map (ids 1..8, in class-index order)."""
  return ''.join(f'item {{\n  name: "{name}"\n  id: {i + 1}\n}}\n' for i, name in enumerate(CLASS_NAMES))


def generate(output_dir: str, num_train: int = 128, num_val: int = 512, seed: int = 0) -> None:
  """Writes both splits and `label_map.pbtxt` to `output_dir`."""
  write_split(output_dir, 'train', num_train, 4, seed)
  write_split(output_dir, 'val', num_val, 1, seed)
  with tf.io.gfile.GFile(os.path.join(output_dir, 'label_map.pbtxt'), 'w') as f:
    f.write(label_map_text())


def check_counts(**counts: int) -> None:
  """Raises a UserInputError naming the flag when a count is below 1 (an empty split trains on nothing)."""
  for name, value in counts.items():
    if value < 1:
      raise errors.UserInputError(f'--{name} must be >= 1, got {value}.')


def main(argv: Sequence[str]) -> None:
  del argv
  f = flags.FLAGS
  try:
    if f.format == 'records':
      check_counts(num_train=f.num_train, num_val=f.num_val)
    else:
      check_counts(num_train_movies=f.num_train_movies, num_val_movies=f.num_val_movies,
                   seconds_per_movie=f.seconds_per_movie)
  except errors.UserInputError as e:
    raise app.UsageError(str(e)) from e
  if f.format == 'records':
    generate(f.output_dir, f.num_train, f.num_val, f.seed)
    print(f'Wrote {f.num_train} train and {f.num_val} val keyframes to {f.output_dir}.')
  else:
    write_ava_movies(f.output_dir, f.num_train_movies, f.num_val_movies, f.seconds_per_movie, f.seed)
    print(f'Wrote {f.num_train_movies} train and {f.num_val_movies} val movies of {f.seconds_per_movie} annotated '
          f'seconds (16 fps, 64x64) with AVA-style CSVs to {f.output_dir}.')


if __name__ == '__main__':
  flags.DEFINE_enum('format', 'records', ['records', 'ava_movies'],
                    'records: keyframe TFRecords, ready to train on; ava_movies: mp4 movies with AVA-style CSVs, '
                    'the input of data_tools.ava.')
  flags.DEFINE_string('output_dir', 'demo_output/detection_tfrecords', 'Where to write.')
  flags.DEFINE_integer('num_train', 128, 'records: training keyframes (few, as labelled boxes are scarce).')
  flags.DEFINE_integer('num_val', 512, 'records: validation keyframes.')
  flags.DEFINE_integer('num_train_movies', 8, 'ava_movies: training movies.')
  flags.DEFINE_integer('num_val_movies', 4, 'ava_movies: validation movies.')
  flags.DEFINE_integer('seconds_per_movie', 16, 'ava_movies: annotated keyframes (seconds) per movie.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')
  app.run(main)
