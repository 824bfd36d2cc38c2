r"""Embedded demo dataset: procedurally generated motion actions rendered as real video files.

Every video shows one large two-coloured object on a dark, faintly textured background, plus a small, slow,
low-contrast distractor and a slight camera shake. The class is the object's MOTION only:

  move_000deg ... move_300deg   straight-line motion in one of six directions 60 degrees apart (angles measured
                                anticlockwise from "right", as seen on screen), 1.0-1.6 px/frame at 32x32;
  rotate_ccw / rotate_cw        rotation in place, 0.15-0.25 rad/frame, anticlockwise / clockwise on screen.

Appearance never depends on the class, so a single frame cannot tell the classes apart (the calibration script
`data_tools/synthetic/calibrate_demo.py` checks that). Each video is cut into 2-3 segments at random frames; every
segment draws a new object (shape, texture, colours, size), background and distractor look and a new speed while
the motion direction and the object's position continue. Two clips from different segments of one video therefore
share the motion but not the look, as two moments of a real video do, which is what CVRL's temporal interval
sampling relies on (paper Sec. 3.1).

Horizontal flips turn move_000deg into move_180deg and rotate_cw into rotate_ccw: training on this data must use
no flip augmentation (the manifest says so too).

The design follows measured facts: at 64x64 with heavy clutter even supervised training stayed at chance on a
2-core CPU; 32x32 frames, one large object that wraps around the edges and a plain background are learnable in
minutes. Sizes, speeds and radii scale with --frame_size / 32.

Layout written (the folder-per-class input of the TFRecord converter):

  <output_dir>/manifest.json                       classes, generation parameters, per-video list, status
  <output_dir>/<split>/<class_name>/<video_id>.mp4 H.264 (libx264, yuv420p) at --fps

with splits train / val / test drawn from disjoint random streams. Output is a pure function of the flags other
than --num_workers: the same pixels and, with the pinned PyAV/FFmpeg build, the same bytes on every x86 CPU (with
or without AVX-512), in-process or in a worker. Geometry uses `data_tools.synthetic.portable_math` (NumPy's SIMD
sin/cos differ between CPUs in the last bit) and x264 runs its portable C code (its assembly is not repeatable on
AVX-512 CPUs); tests/data_tools/synthetic/demo_dataset_test.py checks both by forcing the older CPUs' code paths.
Each video is encoded to a temporary file and renamed into place, so an interrupted run never leaves a truncated
video under a class folder; re-running the same command resumes, skipping the finished videos.

Usage:

  python -m data_tools.synthetic.demo_dataset --output_dir=/tmp/cvrl_demo_videos
  python -m data_tools.synthetic.demo_dataset --output_dir=/tmp/big --num_train=20000 --frame_size=64 --num_frames=64
"""
import colorsys
import dataclasses
import json
import multiprocessing
import os
import shutil
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import av
import av.video.reformatter
import numpy as np

from data_tools.synthetic import portable_math as pm
from official_cvrl.utils import errors

# Sorted, so that a converter that sorts class folder names gives the label indices of this tuple.
CLASS_NAMES = ('move_000deg', 'move_060deg', 'move_120deg', 'move_180deg', 'move_240deg', 'move_300deg',
               'rotate_ccw', 'rotate_cw')
CLASS_DESCRIPTIONS = {
    **{f'move_{a:03d}deg': f'the object moves in a straight line towards {a} degrees (0 = right, 90 = up), '
                           'wrapping around the frame edges'
       for a in range(0, 360, 60)},
    'rotate_ccw': 'the object rotates anticlockwise (as seen on screen) in place',
    'rotate_cw': 'the object rotates clockwise (as seen on screen) in place',
}
SPLITS = ('train', 'val', 'test')
MANIFEST_NAME = 'manifest.json'
VIDEO_EXTENSION = '.mp4'
# Temporary files live outside the split folders, so a converter scanning <split>/<class>/ never sees them.
_TMP_DIR_NAME = '.partial'
_FORMAT_VERSION = 1

# Reference geometry at 32x32; lengths scale with frame_size / 32 (rotation speed is scale-free).
_REFERENCE_SIZE = 32.0
_TRANSLATION_SPEED = (1.0, 1.6)  # px/frame.
_ROTATION_SPEED = (0.15, 0.25)  # rad/frame.
_OBJECT_RADIUS = (6.0, 8.5)  # px.
_DISTRACTOR_RADIUS = (1.5, 2.5)  # px.
_DISTRACTOR_SPEED = (0.1, 0.35)  # px/frame, any direction.
_CAMERA_JITTER = 0.4  # px, amplitude of each of two smooth sinusoids per axis.
_GRATING_PERIOD = (3.0, 8.0)  # px.
_GRATING_CONTRAST = (0.02, 0.06)  # amplitude, on a 0-1 intensity scale.
_NOISE_STD = 0.02  # per pixel and frame, on a 0-1 intensity scale.
_SHAPES = ('circle', 'ellipse', 'triangle', 'square', 'pentagon', 'flower')
# Textures are chosen so that a turn of the object is visible even on a circle (no rotationally symmetric ones).
_TEXTURES = ('halves', 'stripes', 'quadrants', 'spot', 'checker')
# Polygons are given by their circumradius; enlarge the thin ones so every shape covers a similar area.
_SHAPE_SCALE = {'circle': 1.0, 'ellipse': 1.1, 'triangle': 1.3, 'square': 1.05, 'pentagon': 1.0, 'flower': 1.1}
_LUMA = np.array([0.299, 0.587, 0.114])


@dataclasses.dataclass(frozen=True)
class Appearance:
  """The look of one segment of a video. Colours are RGB in [0, 1]; lengths in pixels."""
  shape: str
  shape_param: float  # Ellipse aspect ratio, or flower lobe depth; unused by the other shapes.
  radius: float
  texture: str
  texture_period: float  # Stripe / checker period in px.
  colour_1: Tuple[float, float, float]
  colour_2: Tuple[float, float, float]
  background_colour: Tuple[float, float, float]
  grating_angle: float
  grating_period: float
  grating_phase: float
  grating_contrast: float
  distractor_colour: Tuple[float, float, float]
  distractor_radius: float


@dataclasses.dataclass(frozen=True)
class VideoSpec:
  """Everything needed to render one video, drawn by `sample_video_spec`.

  Positions are (x, y) pixel coordinates with y pointing DOWN (image convention); angles are anticlockwise as
  seen on screen.
  """
  class_name: str
  num_frames: int
  frame_size: int
  segment_starts: Tuple[int, ...]  # First frame of every segment; starts with 0.
  appearances: Tuple[Appearance, ...]  # One per segment.
  speeds: Tuple[float, ...]  # One per segment: px/frame (move_*) or rad/frame (rotate_*), always > 0.
  start_position: Tuple[float, float]
  start_angle: float
  distractor_position: Tuple[float, float]
  distractor_velocity: Tuple[float, float]
  jitter_amplitudes: Tuple[float, ...]  # 4 values: (x1, x2, y1, y2).
  jitter_frequencies: Tuple[float, ...]  # Cycles per frame, same order.
  jitter_phases: Tuple[float, ...]
  noise_seed: int


def _hsv(rng: np.random.Generator, hue, sat, val) -> np.ndarray:
  return np.array(colorsys.hsv_to_rgb(rng.uniform(*hue) % 1.0, rng.uniform(*sat), rng.uniform(*val)))


def sample_appearance(rng: np.random.Generator, scale: float) -> Appearance:
  """Draws a segment look; the object's two colours differ in brightness so turns survive greyscale."""
  background = _hsv(rng, (0.0, 1.0), (0.2, 0.6), (0.08, 0.22))
  background_luma = pm.dot3(_LUMA, background)
  for _ in range(1000):
    colour_1 = _hsv(rng, (0.0, 1.0), (0.4, 1.0), (0.55, 1.0))
    colour_2 = _hsv(rng, (0.0, 1.0), (0.3, 1.0), (0.35, 1.0))
    luma_1, luma_2 = pm.dot3(_LUMA, colour_1), pm.dot3(_LUMA, colour_2)
    if abs(luma_1 - luma_2) >= 0.2 and min(luma_1, luma_2) >= background_luma + 0.15:
      break
  else:  # Practically unreachable (acceptance is ~20%); keeps the loop bounded.
    colour_1, colour_2 = np.array([0.95, 0.95, 0.95]), np.array([0.45, 0.45, 0.45])
  # Low-contrast distractor: the background shifted by a small random colour step.
  step = rng.normal(size=3)
  step = np.abs(step) / np.sqrt(pm.dot3(step, step))
  distractor = np.clip(background + rng.uniform(0.12, 0.2) / max(pm.dot3(_LUMA, step), 0.3) * step, 0.0, 1.0)
  shape = _SHAPES[rng.integers(len(_SHAPES))]
  shape_param = {'ellipse': rng.uniform(0.55, 0.75), 'flower': rng.uniform(0.2, 0.35)}.get(shape, 0.0)
  return Appearance(
      shape=shape,
      shape_param=float(shape_param),
      radius=float(rng.uniform(*_OBJECT_RADIUS) * scale * _SHAPE_SCALE[shape]),
      texture=_TEXTURES[rng.integers(len(_TEXTURES))],
      texture_period=float(rng.uniform(3.5, 5.5) * scale),
      colour_1=tuple(float(c) for c in colour_1),
      colour_2=tuple(float(c) for c in colour_2),
      background_colour=tuple(float(c) for c in background),
      grating_angle=float(rng.uniform(0.0, np.pi)),
      grating_period=float(rng.uniform(*_GRATING_PERIOD) * scale),
      grating_phase=float(rng.uniform(0.0, 2 * np.pi)),
      grating_contrast=float(rng.uniform(*_GRATING_CONTRAST)),
      distractor_colour=tuple(float(c) for c in distractor),
      distractor_radius=float(rng.uniform(*_DISTRACTOR_RADIUS) * scale))


def _sample_segment_starts(rng: np.random.Generator, num_frames: int, min_segments: int,
                           max_segments: int) -> Tuple[int, ...]:
  """Random cut points with every segment at least ~1/6 of the video (and >= 2 frames) long."""
  min_length = max(2, num_frames // 6)
  most = max(1, min(max_segments, num_frames // min_length))
  num_segments = int(rng.integers(min(min_segments, most), most + 1))
  spare = num_frames - num_segments * min_length
  offsets = np.sort(rng.integers(0, spare + 1, size=num_segments - 1))
  return (0,) + tuple(int(min_length * (i + 1) + o) for i, o in enumerate(offsets))


def sample_video_spec(rng: np.random.Generator, class_name: str, num_frames: int, frame_size: int,
                      min_segments: int = 2, max_segments: int = 3) -> VideoSpec:
  """Draws the random content of one video of class `class_name`.

  Args:
    rng: the video's own generator (one per video keeps videos independent of generation order).
    class_name: one of `CLASS_NAMES`.
    num_frames: video length T.
    frame_size: frame height = width S.
    min_segments: fewest appearance segments per video (1 = the look never changes).
    max_segments: most appearance segments per video; fewer when the video is too short.

  Returns:
    A `VideoSpec` for `render_video`.
  """
  if class_name not in CLASS_NAMES:
    raise errors.UserInputError(f'Unknown demo class {class_name!r}; expected one of {CLASS_NAMES}.')
  scale = frame_size / _REFERENCE_SIZE
  segment_starts = _sample_segment_starts(rng, num_frames, min_segments, max_segments)
  if class_name.startswith('move_'):
    speed_range = tuple(s * scale for s in _TRANSLATION_SPEED)
  else:
    speed_range = _ROTATION_SPEED
  appearances = tuple(sample_appearance(rng, scale) for _ in segment_starts)
  speeds = tuple(float(rng.uniform(*speed_range)) for _ in segment_starts)
  distractor_direction = rng.uniform(0.0, 2 * np.pi)
  distractor_speed = rng.uniform(*_DISTRACTOR_SPEED) * scale
  return VideoSpec(
      class_name=class_name,
      num_frames=num_frames,
      frame_size=frame_size,
      segment_starts=segment_starts,
      appearances=appearances,
      speeds=speeds,
      start_position=tuple(float(p) for p in rng.uniform(0.0, frame_size, size=2)),
      start_angle=float(rng.uniform(0.0, 2 * np.pi)),
      distractor_position=tuple(float(p) for p in rng.uniform(0.0, frame_size, size=2)),
      distractor_velocity=(float(distractor_speed * pm.cos(distractor_direction)),
                           float(-distractor_speed * pm.sin(distractor_direction))),
      jitter_amplitudes=tuple(float(a) for a in rng.uniform(0.0, _CAMERA_JITTER * scale, size=4)),
      jitter_frequencies=tuple(float(f) for f in rng.uniform(0.02, 0.12, size=4)),
      jitter_phases=tuple(float(p) for p in rng.uniform(0.0, 2 * np.pi, size=4)),
      noise_seed=int(rng.integers(2**31)))


def _per_frame_speed(spec: VideoSpec) -> np.ndarray:
  """Speed in effect during each step t -> t + 1, shape [T]."""
  bounds = list(spec.segment_starts[1:]) + [spec.num_frames]
  return np.concatenate([np.full(stop - start, speed)
                         for start, stop, speed in zip(spec.segment_starts, bounds, spec.speeds)])


def object_trajectory(spec: VideoSpec) -> Tuple[np.ndarray, np.ndarray]:
  """Where the object is in each frame, before wrapping and camera shake.

  Args:
    spec: the video.

  Returns:
    positions: [T, 2] float64 (x, y), y pointing down; take modulo frame_size for the on-screen position.
    angles: [T] float64 orientation in radians, anticlockwise on screen.
  """
  speed = _per_frame_speed(spec)
  travelled = np.concatenate([[0.0], np.cumsum(speed[:-1])])  # [T]: distance or angle covered before frame t.
  start = np.asarray(spec.start_position, np.float64)
  if spec.class_name.startswith('move_'):
    direction = np.deg2rad(float(spec.class_name[len('move_'):len('move_') + 3]))
    unit = np.array([pm.cos(direction), -pm.sin(direction)])  # Screen y points down.
    return start + travelled[:, None] * unit, np.full(spec.num_frames, spec.start_angle)
  sign = 1.0 if spec.class_name == 'rotate_ccw' else -1.0
  return np.tile(start, (spec.num_frames, 1)), spec.start_angle + sign * travelled


def camera_offset(spec: VideoSpec) -> np.ndarray:
  """Camera shake: [T, 2] (x, y) offset of the view, a sum of two slow sinusoids per axis."""
  t = np.arange(spec.num_frames, dtype=np.float64)[:, None]
  waves = (np.asarray(spec.jitter_amplitudes) *
           pm.sin(2 * np.pi * np.asarray(spec.jitter_frequencies) * t + np.asarray(spec.jitter_phases)))
  return np.stack([waves[:, 0] + waves[:, 1], waves[:, 2] + waves[:, 3]], axis=-1)


def _wrap(d: np.ndarray, period: float) -> np.ndarray:
  """Shortest signed offset on a torus of the given period (objects wrap around the frame edges)."""
  return (d + period / 2) % period - period / 2


def _shape_radius(app: Appearance, theta: Optional[np.ndarray], rho: np.ndarray) -> np.ndarray:
  """Boundary radius of the shape at object-frame polar angle theta (None for a circle); shaped like rho."""
  r = app.radius
  if app.shape == 'circle':
    return np.full_like(rho, r)
  if app.shape == 'ellipse':
    b = app.shape_param
    return r * b / np.sqrt((b * pm.cos(theta))**2 + pm.sin(theta)**2)
  if app.shape == 'flower':
    return r * (1.0 - app.shape_param * (0.5 + 0.5 * pm.cos(5 * theta)))
  sides = {'triangle': 3, 'square': 4, 'pentagon': 5}[app.shape]
  sector = 2 * np.pi / sides
  return r * pm.cos(np.pi / sides) / pm.cos(theta % sector - sector / 2)


def _texture_weight(app: Appearance, u: np.ndarray, v: np.ndarray, rho: np.ndarray) -> np.ndarray:
  """Weight of colour_2 at object-frame coordinates (u right, v up), with ~1 px soft boundaries."""
  p = app.texture_period
  if app.texture == 'halves':
    w = 0.5 + u
  elif app.texture == 'stripes':
    w = 0.5 + p / np.pi * pm.sin(2 * np.pi * u / p)
  elif app.texture == 'quadrants':
    w = 0.5 + u * v / np.maximum(rho, 1e-6)
  elif app.texture == 'spot':
    w = 0.5 + 0.4 * app.radius - pm.hypot(u - 0.4 * app.radius, v)
  else:  # checker
    w = 0.5 + p / np.pi * pm.sin(2 * np.pi * u / p) * pm.sin(2 * np.pi * v / p)
  return np.clip(w, 0.0, 1.0)


def object_layer(app: Appearance, dx: np.ndarray, dy: np.ndarray, angles: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """The object drawn over T frames: its coverage and colour at every pixel (soft, ~1 px edges).

  Args:
    app: the object's look.
    dx: float32 offsets (right) of pixel centres from the object centre, broadcastable to [T, H, W].
    dy: float32 offsets (UP) of pixel centres from the object centre, broadcastable to [T, H, W].
    angles: [T] orientations, radians anticlockwise on screen.

  Returns:
    alpha: float32 [T, H, W, 1] coverage in [0, 1]; colour: float32 [T, H, W, 3].
  """
  # Coordinates in the object's own frame (u right, v up, turned with the object).
  cos_a = pm.cos(angles).astype(np.float32)[:, None, None]
  sin_a = pm.sin(angles).astype(np.float32)[:, None, None]
  u = cos_a * dx + sin_a * dy
  v = cos_a * dy - sin_a * dx
  rho = pm.hypot(u, v).astype(np.float32)
  theta = None if app.shape == 'circle' else pm.arctan2(v, u)
  alpha = np.clip(_shape_radius(app, theta, rho) + 0.5 - rho, 0.0, 1.0).astype(np.float32)[..., None]
  weight = _texture_weight(app, u, v, rho).astype(np.float32)[..., None]
  colour_1 = np.asarray(app.colour_1, np.float32)
  return alpha, colour_1 + weight * (np.asarray(app.colour_2, np.float32) - colour_1)


def render_video(spec: VideoSpec) -> np.ndarray:
  """Renders a video, vectorised over frames and pixels (soft, ~1 px anti-aliased edges).

  Args:
    spec: the video, from `sample_video_spec`.

  Returns:
    uint8 frames [T, S, S, 3] (RGB).
  """
  size, num_frames = spec.frame_size, spec.num_frames
  positions, angles = object_trajectory(spec)
  camera = camera_offset(spec)
  steps = np.arange(num_frames, dtype=np.float64)[:, None]
  distractor = np.asarray(spec.distractor_position) + steps * np.asarray(spec.distractor_velocity)
  # A screen pixel centre (i + 0.5) sees the world point pixel + camera offset. Offsets along x depend only on
  # (t, column) and along y only on (t, row), so they are computed as [T, 1, S] and [T, S, 1] and broadcast.
  pixels = np.arange(size, dtype=np.float64) + 0.5
  world_x = pixels[None, :] + camera[:, :1]  # [T, S]
  world_y = pixels[None, :] + camera[:, 1:]

  def offsets(centres):  # [T, 2] -> wrapped x offsets [T, 1, S] and y offsets (y up) [T, S, 1], float32.
    dx = _wrap(world_x - centres[:, :1], size).astype(np.float32)[:, None, :]
    dy = -_wrap(world_y - centres[:, 1:], size).astype(np.float32)[:, :, None]
    return dx, dy

  object_dx, object_dy = offsets(positions)
  distractor_dx, distractor_dy = offsets(distractor)
  frames = np.empty((num_frames, size, size, 3), np.float32)
  bounds = list(spec.segment_starts[1:]) + [num_frames]
  for start, stop, app in zip(spec.segment_starts, bounds, spec.appearances):
    t = slice(start, stop)
    # Background: flat dark colour and a faint static grating (moves only with the camera).
    k = 2 * np.pi / app.grating_period
    phase = (k * pm.cos(app.grating_angle) * world_x[t, None, :] +
             k * pm.sin(app.grating_angle) * world_y[t, :, None] + app.grating_phase)
    image = (np.asarray(app.background_colour, np.float32) +
             (app.grating_contrast * pm.sin(phase)).astype(np.float32)[..., None])  # [Ts, S, S, 3]
    # Distractor: a small soft disc drifting slowly, drawn behind the object.
    dist = pm.hypot(distractor_dx[t], distractor_dy[t]).astype(np.float32)
    alpha = np.clip(app.distractor_radius + 0.5 - dist, 0.0, 1.0)[..., None]
    image += alpha * (np.asarray(app.distractor_colour, np.float32) - image)
    alpha, colour = object_layer(app, object_dx[t], object_dy[t], angles[t])
    frames[t] = image + alpha * (colour - image)
  noise = np.random.default_rng(spec.noise_seed).standard_normal(size=frames.shape, dtype=np.float32)
  frames += np.float32(_NOISE_STD) * noise
  return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)


# x264's assembly is not a pure function of its input on every x86 CPU: on AVX-512 machines the same frames gave
# 7 different streams in 40 in-process encodes (decoded pixels up to 24 levels apart), while its portable C code gave
# one. `asm=0` costs little at the demo's frame sizes and makes the bytes depend only on the frames. The RGB ->
# YUV 4:2:0 conversion is done explicitly with swscale's bit-exact, accurately rounded path instead of letting the
# encoder pick a CPU-specific SIMD converter.
_X264_PARAMS = 'asm=0:threads=1:lookahead-threads=1:sliced-threads=0'
_BITEXACT = av.video.reformatter.Interpolation.BITEXACT | av.video.reformatter.Interpolation.ACCURATE_RND


def rgb_to_yuv420p(frame: np.ndarray) -> av.VideoFrame:
  """One RGB frame as a YUV 4:2:0 `av.VideoFrame`, converted the same way on every CPU."""
  return av.VideoFrame.from_ndarray(frame, format='rgb24').reformat(format='yuv420p', interpolation=_BITEXACT,
                                                                    threads=1)


def encode_video(frames: np.ndarray, path: str, fps: int, crf: int) -> None:
  """Writes frames as an H.264 MP4 (libx264, yuv420p), byte-identical on every x86 CPU and in every process.

  Args:
    frames: uint8 [T, H, W, 3] RGB, H and W even (yuv420p halves the chroma resolution).
    path: output file; written in place (callers rename a temporary file for atomicity).
    fps: frame rate stored in the stream.
    crf: x264 constant rate factor (0 = lossless; 12 is visually lossless at these sizes).
  """
  _, height, width, _ = frames.shape
  with av.open(path, mode='w', format='mp4') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.width, stream.height, stream.pix_fmt = width, height, 'yuv420p'
    stream.options = {'crf': str(crf), 'preset': 'veryfast', 'x264-params': _X264_PARAMS}
    stream.codec_context.thread_count = 1
    for index, frame in enumerate(frames):
      yuv = rgb_to_yuv420p(frame)
      yuv.pts = index
      for packet in stream.encode(yuv):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)


def decode_video(path: str) -> np.ndarray:
  """Decodes every frame of a video file with PyAV: uint8 [T, H, W, 3] RGB."""
  # One reformatter for all frames: `frame.to_ndarray(format='rgb24')` sets up a new colour converter per frame,
  # measured 7-30x slower on these tiny frames; the pixels are identical.
  reformatter = av.video.reformatter.VideoReformatter()
  with av.open(path) as container:
    return np.stack([reformatter.reformat(f, format='rgb24', interpolation=_BITEXACT, threads=1).to_ndarray()
                     for f in container.decode(video=0)])


def _split_rng(seed: int, split: str, *keys: int) -> np.random.Generator:
  # Distinct tagged entropy words per split and per video: streams never overlap, and a video's content does not
  # depend on how many videos are generated or in which order.
  return np.random.default_rng([seed, SPLITS.index(split), *keys])


def split_labels(seed: int, split: str, num_videos: int) -> List[str]:
  """Class of each video of a split: balanced (counts differ by at most one) and shuffled by seed."""
  order = np.arange(num_videos) % len(CLASS_NAMES)
  _split_rng(seed, split, 0x1abe1).shuffle(order)
  return [CLASS_NAMES[i] for i in order]


def video_spec(seed: int, split: str, index: int, class_name: str, num_frames: int, frame_size: int,
               min_segments: int, max_segments: int) -> VideoSpec:
  """The spec of video `index` of `split`: a pure function of its arguments."""
  return sample_video_spec(_split_rng(seed, split, 0x51de0, index), class_name, num_frames, frame_size,
                           min_segments, max_segments)


@dataclasses.dataclass(frozen=True)
class _Task:
  split: str
  index: int
  video_id: str
  relative_path: str
  spec: VideoSpec


def _video_id(split: str, index: int) -> str:
  return f'{split}_{index:06d}'


def _tasks(params: Dict[str, Any]) -> List[_Task]:
  tasks = []
  for split in SPLITS:
    for index, class_name in enumerate(split_labels(params['seed'], split, params[f'num_{split}'])):
      video_id = _video_id(split, index)
      spec = video_spec(params['seed'], split, index, class_name, params['num_frames'], params['frame_size'],
                        params['min_segments'], params['max_segments'])
      tasks.append(_Task(split, index, video_id, os.path.join(split, class_name, video_id + VIDEO_EXTENSION), spec))
  return tasks


def _render_and_write(args: Tuple[_Task, Dict[str, Any], str]) -> Tuple[str, int, float]:
  """Worker: renders one video, encodes it under a temporary name and renames it into place."""
  task, params, output_dir = args
  started = time.perf_counter()
  frames = render_video(task.spec)
  render_seconds = time.perf_counter() - started
  final_path = os.path.join(output_dir, task.relative_path)
  tmp_path = os.path.join(output_dir, _TMP_DIR_NAME, f'{task.video_id}{VIDEO_EXTENSION}.{os.getpid()}')
  encode_video(frames, tmp_path, params['fps'], params['crf'])
  os.replace(tmp_path, final_path)  # Atomic on one filesystem: a video is either absent or complete.
  return task.relative_path, os.path.getsize(final_path), render_seconds


def _write_json_atomically(path: str, content: Dict[str, Any]) -> None:
  tmp_path = path + '.tmp'
  with open(tmp_path, 'w') as f:
    json.dump(content, f, indent=1, sort_keys=True)
    f.write('\n')
  os.replace(tmp_path, path)


def _manifest(params: Dict[str, Any], tasks: Sequence[_Task], complete: bool) -> Dict[str, Any]:
  splits = {}
  for split in SPLITS:
    per_class = {name: 0 for name in CLASS_NAMES}
    for task in tasks:
      if task.split == split:
        per_class[task.spec.class_name] += 1
    splits[split] = {'num_videos': sum(per_class.values()), 'videos_per_class': per_class}
  return {
      'name': 'cvrl_demo_motion',
      'format_version': _FORMAT_VERSION,
      'status': 'complete' if complete else 'incomplete (generation running or interrupted; re-run to resume)',
      'generator': 'python -m data_tools.synthetic.demo_dataset',
      'params': params,
      'classes': [{'index': i, 'name': n, 'description': CLASS_DESCRIPTIONS[n]} for i, n in enumerate(CLASS_NAMES)],
      'video_format': {'container': 'mp4', 'codec': 'h264 (libx264)', 'pix_fmt': 'yuv420p',
                       'crf': params['crf'], 'fps': params['fps'],
                       'frame_size': [params['frame_size'], params['frame_size']],
                       'num_frames': params['num_frames']},
      'content': {
          'translation_speed_px_per_frame': [s * params['frame_size'] / _REFERENCE_SIZE
                                             for s in _TRANSLATION_SPEED],
          'rotation_speed_rad_per_frame': list(_ROTATION_SPEED),
          'object_radius_px': [r * params['frame_size'] / _REFERENCE_SIZE for r in _OBJECT_RADIUS],
          'shapes': list(_SHAPES), 'textures': list(_TEXTURES),
          'segments_per_video': [params['min_segments'], params['max_segments']],
      },
      'notes': [
          'Classes differ only in motion; appearance is independent of the class, so a single frame is at chance.',
          'Horizontal flip augmentation must be OFF for this data: a flip turns move_000deg into move_180deg '
          '(and 060 <-> 120, 240 <-> 300) and rotate_cw into rotate_ccw. Vertical flips are equally harmful.',
          'Each video has segments with a new object/background look at random frames; motion direction and '
          'position continue across segment boundaries.',
          'Label indices are the positions in "classes" (= sorted class folder names).',
      ],
      'splits': splits,
      # Per video: where the look changes, and the speed of each segment (px/frame for move_*, rad/frame for
      # rotate_*), for analyses such as "do the two clips of a positive pair come from different segments".
      'videos': [{'split': t.split, 'class': t.spec.class_name, 'video_id': t.video_id, 'path': t.relative_path,
                  'segment_starts': list(t.spec.segment_starts), 'speeds': [round(v, 6) for v in t.spec.speeds]}
                 for t in tasks],
  }


def _check_output_dir(output_dir: str, params: Dict[str, Any]) -> None:
  """Allows a fresh/empty folder, or resuming a run with identical parameters; refuses anything else."""
  manifest_path = os.path.join(output_dir, MANIFEST_NAME)
  if os.path.exists(manifest_path):
    with open(manifest_path) as f:
      try:
        previous = json.load(f).get('params', {})
      except json.JSONDecodeError as e:
        raise errors.UserInputError(f'{manifest_path} is not valid JSON ({e}); delete {output_dir} or choose '
                                    'another --output_dir.') from e
    if previous != params:
      differing = sorted(k for k in set(previous) | set(params) if previous.get(k) != params.get(k))
      raise errors.UserInputError(
          f'{output_dir} holds a demo dataset generated with different parameters ({", ".join(differing)} differ, '
          f'see {manifest_path}). Choose another --output_dir or delete this one.')
  elif os.path.isdir(output_dir) and [n for n in os.listdir(output_dir) if n != _TMP_DIR_NAME]:
    raise errors.UserInputError(f'{output_dir} is not empty and has no {MANIFEST_NAME}: refusing to mix the demo '
                                'dataset with other files. Choose an empty or new --output_dir.')


def generate_dataset(output_dir: str, num_train: int = 2000, num_val: int = 400, num_test: int = 1000,
                     num_frames: int = 48, frame_size: int = 32, fps: int = 25, crf: int = 12, seed: int = 0,
                     min_segments: int = 2, max_segments: int = 3,
                     num_workers: Optional[int] = None) -> Dict[str, Any]:
  """Renders and encodes the demo dataset into `output_dir` (see the module docstring for the layout).

  Args:
    output_dir: destination folder; created if missing. Must be empty, or hold an earlier run with the same
      parameters (which is then resumed).
    num_train: number of training videos.
    num_val: number of validation videos.
    num_test: number of test videos.
    num_frames: frames per video T.
    frame_size: frame height = width S (even, >= 16).
    fps: frame rate stored in the files.
    crf: x264 constant rate factor (0 = lossless).
    seed: dataset seed; the output is a pure function of all arguments except `num_workers`.
    min_segments: fewest appearance segments per video.
    max_segments: most appearance segments per video.
    num_workers: processes for rendering + encoding; defaults to the CPU count.

  Returns:
    The manifest written to `<output_dir>/manifest.json`.
  """
  for name, value in (('num_train', num_train), ('num_val', num_val), ('num_test', num_test)):
    if value < 0:
      raise errors.UserInputError(f'--{name} must be >= 0, got {value}.')
  if frame_size < 16 or frame_size % 2:
    raise errors.UserInputError(f'--frame_size must be even and >= 16 (H.264 yuv420p), got {frame_size}.')
  if num_frames < 2:
    raise errors.UserInputError(f'--num_frames must be >= 2 (motion needs two frames), got {num_frames}.')
  if not 1 <= min_segments <= max_segments:
    raise errors.UserInputError(f'Need 1 <= --min_segments <= --max_segments, got {min_segments}, {max_segments}.')
  if not 0 <= crf <= 51 or fps < 1:
    raise errors.UserInputError(f'--crf must be in [0, 51] and --fps >= 1, got crf={crf}, fps={fps}.')
  params = dict(num_train=num_train, num_val=num_val, num_test=num_test, num_frames=num_frames,
                frame_size=frame_size, fps=fps, crf=crf, seed=seed, min_segments=min_segments,
                max_segments=max_segments)
  _check_output_dir(output_dir, params)
  tasks = _tasks(params)
  tmp_dir = os.path.join(output_dir, _TMP_DIR_NAME)
  shutil.rmtree(tmp_dir, ignore_errors=True)  # Leftovers of an interrupted run: never renamed, so incomplete.
  os.makedirs(tmp_dir)
  for split in SPLITS:
    for class_name in CLASS_NAMES:
      os.makedirs(os.path.join(output_dir, split, class_name), exist_ok=True)
  _write_json_atomically(os.path.join(output_dir, MANIFEST_NAME), _manifest(params, tasks, complete=False))

  todo = [t for t in tasks if not os.path.exists(os.path.join(output_dir, t.relative_path))]
  logging.info('Generating %d demo videos (%d x %dx%d frames at %d fps) into %s.', len(tasks), num_frames,
               frame_size, frame_size, fps, output_dir)
  if len(todo) < len(tasks):
    logging.info('Resuming: %d of %d videos already in %s.', len(tasks) - len(todo), len(tasks), output_dir)
  num_workers = num_workers or os.cpu_count() or 1
  started = last_report = time.perf_counter()
  total_bytes = render_seconds = 0.0
  work = [(t, params, output_dir) for t in todo]
  # 'spawn' rather than 'fork': callers (tests, notebooks) may have TensorFlow's threads running, which fork breaks.
  pool = multiprocessing.get_context('spawn').Pool(num_workers) if num_workers > 1 else _InlinePool()
  with pool:
    for done, (_, size_bytes, seconds) in enumerate(pool.imap_unordered(_render_and_write, work, chunksize=8), 1):
      total_bytes += size_bytes
      render_seconds += seconds
      now = time.perf_counter()
      if now - last_report >= 2.0 or done == len(todo):
        last_report = now
        rate = done / max(now - started, 1e-9)
        logging.info('%d/%d videos, %.0f videos/s, ETA %.0f s', done, len(todo), rate, (len(todo) - done) / rate)
  elapsed = time.perf_counter() - started
  shutil.rmtree(tmp_dir, ignore_errors=True)
  manifest = _manifest(params, tasks, complete=True)
  _write_json_atomically(os.path.join(output_dir, MANIFEST_NAME), manifest)
  if todo:
    logging.info('Wrote %d videos (%.1f MB, %.1f kB/video) in %.1f s with %d workers; rendering took %.1f ms/video, '
                 'the rest is encoding and I/O.', len(todo), total_bytes / 1e6, total_bytes / 1e3 / len(todo),
                 elapsed, num_workers, 1e3 * render_seconds / len(todo))
  return manifest


class _InlinePool:
  """Same interface as the part of multiprocessing.Pool used above, in this process (num_workers=1)."""

  def __enter__(self):
    return self

  def __exit__(self, *unused_exc):
    return False

  def imap_unordered(self, fn, iterable, chunksize=1):
    del chunksize
    return map(fn, iterable)


def define_flags() -> None:
  """Defines the command-line flags (only when run as a program, so importing this module defines none)."""
  flags.DEFINE_string('output_dir', None, 'Folder to write <split>/<class>/<video_id>.mp4 and manifest.json into.')
  flags.DEFINE_integer('num_train', 2000, 'Training videos.')
  flags.DEFINE_integer('num_val', 400, 'Validation videos.')
  flags.DEFINE_integer('num_test', 1000, 'Test videos.')
  flags.DEFINE_integer('num_frames', 48, 'Frames per video.')
  flags.DEFINE_integer('frame_size', 32, 'Frame height and width in pixels (even); geometry scales with it.')
  flags.DEFINE_integer('fps', 25, 'Frame rate stored in the video files.')
  flags.DEFINE_integer('crf', 12, 'x264 constant rate factor: 0 lossless, 12 visually lossless, 23 x264 default.')
  flags.DEFINE_integer('seed', 0, 'Dataset seed; the output is deterministic given all flags but --num_workers.')
  flags.DEFINE_integer('min_segments', 2, 'Fewest appearance segments per video (1 = appearance never changes).')
  flags.DEFINE_integer('max_segments', 3, 'Most appearance segments per video.')
  flags.DEFINE_integer('num_workers', None, 'Worker processes; default: the number of CPUs.')


def main(argv: Sequence[str]) -> None:
  del argv
  if not flags.FLAGS.output_dir:
    raise app.UsageError('--output_dir is required.')
  f = flags.FLAGS
  try:
    generate_dataset(f.output_dir, num_train=f.num_train, num_val=f.num_val, num_test=f.num_test,
                     num_frames=f.num_frames, frame_size=f.frame_size, fps=f.fps, crf=f.crf, seed=f.seed,
                     min_segments=f.min_segments, max_segments=f.max_segments, num_workers=f.num_workers)
  except errors.UserInputError as e:
    raise app.UsageError(str(e)) from e


if __name__ == '__main__':
  define_flags()
  app.run(main)
