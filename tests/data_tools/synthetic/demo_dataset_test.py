"""Tests for the embedded demo dataset generator (data_tools/synthetic/demo_dataset.py) and its calibration helpers.

Motion is checked from the DECODED video files with independent estimators: phase correlation on the torus for
translation (the object wraps around the frame edges, so consecutive frames are near-circular shifts) and angular
cross-correlation of a ring of pixels around the object's centre for rotation. The expected values come from the
class name (direction, rotation sense) and the per-video speeds in the manifest.
"""
import hashlib
import json
import os
import subprocess
import sys
import tempfile

from absl.testing import parameterized
import av
import numpy as np
import tensorflow as tf

from data_tools.synthetic import calibrate_demo
from data_tools.synthetic import demo_dataset
from official_cvrl.utils import errors

_TINY = dict(num_train=8, num_val=3, num_test=5, num_frames=8, frame_size=32, num_workers=1)
_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

# Run in a fresh interpreter under each CPU code path: hashes of rendered demo and detection frames (pure NumPy)
# and of their encoded mp4 bytes.
_FINGERPRINT_SCRIPT = r"""
import hashlib, os, sys, tempfile
import numpy as np
from data_tools.synthetic import demo_dataset, synthetic_detection
frames_hash, bytes_hash = hashlib.sha256(), hashlib.sha256()
with tempfile.TemporaryDirectory() as tmp:
  for index, class_name in enumerate(demo_dataset.split_labels(0, 'train', 16)):
    spec = demo_dataset.video_spec(0, 'train', index, class_name, num_frames=24, frame_size=32,
                                   min_segments=2, max_segments=3)
    frames = demo_dataset.render_video(spec)
    frames_hash.update(frames.tobytes())
    path = os.path.join(tmp, f'{index}.mp4')
    demo_dataset.encode_video(frames, path, fps=25, crf=12)
    with open(path, 'rb') as f:
      bytes_hash.update(f.read())
  for seed in range(4):
    rng = np.random.default_rng(seed)
    actors = synthetic_detection.sample_scene(rng, num_frames=8, size=64)
    frames, boxes = synthetic_detection.render_scene(rng, actors, num_frames=8, size=64)
    frames_hash.update(frames.tobytes())
    frames_hash.update(boxes.tobytes())
print(frames_hash.hexdigest(), bytes_hash.hexdigest())
"""

# Environments that make this machine take the code paths of older x86 CPUs: NumPy's AVX-512 (x86-64-v4) and AVX2
# (v3) SIMD dispatch off, OpenBLAS's generic SSE3 kernels, glibc's libm without FMA/AVX2 variants. On a CPU that
# lacks a feature, disabling it changes nothing, so the test means the same everywhere.
_CPU_CODE_PATHS = {
    'native': {},
    'no_avx512': {'NPY_DISABLE_CPU_FEATURES': 'X86_V4'},
    'x86_64_v2_baseline': {'NPY_DISABLE_CPU_FEATURES': 'X86_V4 X86_V3', 'OPENBLAS_CORETYPE': 'Prescott',
                           'GLIBC_TUNABLES': 'glibc.cpu.hwcaps=-AVX512F,-AVX512DQ,-AVX2,-FMA,-AVX'},
}


def _grey(frames: np.ndarray) -> np.ndarray:
  """[T, H, W, 3] uint8 -> zero-mean float64 greyscale [T, H, W]."""
  grey = frames.astype(np.float64).mean(-1)
  return grey - grey.mean(axis=(1, 2), keepdims=True)


def _translation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """(dx, dy) with y down such that b(p) ~ a(p - (dx, dy)), by (half-whitened) phase correlation on the torus."""
  size = a.shape[0]
  cross = np.fft.fft2(b) * np.conj(np.fft.fft2(a))
  corr = np.real(np.fft.ifft2(cross / (np.abs(cross)**0.5 + 1e-9)))
  row, col = np.unravel_index(np.argmax(corr), corr.shape)
  offsets = np.arange(-1, 2)
  patch = corr[np.ix_((row + offsets) % size, (col + offsets) % size)]
  patch = np.maximum(patch - patch.min(), 0.0)  # Sub-pixel peak: centroid of the 3x3 neighbourhood.
  dy = row + patch.sum(1) @ offsets / patch.sum()
  dx = col + patch.sum(0) @ offsets / patch.sum()
  return (np.array([dx, dy]) + size / 2) % size - size / 2


def _rotation(a: np.ndarray, b: np.ndarray, centre_a: np.ndarray, centre_b: np.ndarray) -> float:
  """Angle (rad, anticlockwise on screen) turning the ring of pixels around centre_a in a into that of b."""
  size, bins = a.shape[0], 180
  phi = np.arange(bins) * 2 * np.pi / bins
  radii = np.linspace(1.5, 3.5, 5)[:, None]  # Inside every shape at 32x32 (smallest inner radius ~3.6 px).

  def ring(image, centre):  # Bilinear samples on the torus; pixel i covers [i, i + 1), its centre is i + 0.5.
    x = centre[0] + radii * np.cos(phi) - 0.5
    y = centre[1] - radii * np.sin(phi) - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    at = lambda yy, xx: image[yy % size, xx % size]
    values = (at(y0, x0) * (1 - fx) * (1 - fy) + at(y0, x0 + 1) * fx * (1 - fy) +
              at(y0 + 1, x0) * (1 - fx) * fy + at(y0 + 1, x0 + 1) * fx * fy)
    return (values - values.mean(1, keepdims=True)).mean(0)

  ring_a, ring_b = ring(a, centre_a), ring(b, centre_b)
  max_bins = 15  # +-0.52 rad: beyond the fastest rotation, below every texture's symmetry period.
  scores = [ring_b @ np.roll(ring_a, s) for s in range(-max_bins, max_bins + 1)]
  return (int(np.argmax(scores)) - max_bins) * 2 * np.pi / bins


def _within_segment_steps(entry, num_frames):
  """Steps t -> t + 1 that do not cross a change of look, and the speed in effect."""
  starts = entry['segment_starts']
  steps = [t for t in range(num_frames - 1) if t + 1 not in starts]
  speeds = [entry['speeds'][np.searchsorted(starts, t, side='right') - 1] for t in steps]
  return steps, np.asarray(speeds)


class DemoDatasetTest(tf.test.TestCase, parameterized.TestCase):

  def _generate(self, name, **overrides):
    output_dir = os.path.join(self.get_temp_dir(), name)
    manifest = demo_dataset.generate_dataset(output_dir, **{**_TINY, **overrides})
    return output_dir, manifest

  def test_layout_manifest_and_decoding(self):
    output_dir, manifest = self._generate('layout')
    self.assertEqual(sorted(os.listdir(output_dir)), ['manifest.json', 'test', 'train', 'val'])
    on_disk = set()
    for split in demo_dataset.SPLITS:
      self.assertEqual(sorted(os.listdir(os.path.join(output_dir, split))), list(demo_dataset.CLASS_NAMES))
      for class_name in demo_dataset.CLASS_NAMES:
        for file_name in os.listdir(os.path.join(output_dir, split, class_name)):
          on_disk.add(os.path.join(split, class_name, file_name))
    self.assertEqual(on_disk, {v['path'] for v in manifest['videos']})
    self.assertLen(on_disk, 16)
    with open(os.path.join(output_dir, 'manifest.json')) as f:
      self.assertEqual(json.load(f), manifest)
    self.assertEqual(manifest['status'], 'complete')
    self.assertEqual([c['name'] for c in manifest['classes']], list(demo_dataset.CLASS_NAMES))
    self.assertEqual([c['index'] for c in manifest['classes']], list(range(8)))
    self.assertEqual(list(demo_dataset.CLASS_NAMES), sorted(demo_dataset.CLASS_NAMES))  # = converter label order.
    self.assertEqual(manifest['params']['num_frames'], 8)
    self.assertTrue(any('flip' in note.lower() for note in manifest['notes']))
    # 8 training videos over 8 classes: exactly one each (balanced assignment).
    self.assertEqual(set(manifest['splits']['train']['videos_per_class'].values()), {1})
    self.assertEqual([manifest['splits'][s]['num_videos'] for s in demo_dataset.SPLITS], [8, 3, 5])
    for entry in manifest['videos']:
      path = os.path.join(output_dir, entry['path'])
      self.assertEqual(os.path.basename(os.path.dirname(path)), entry['class'])
      self.assertEqual(os.path.basename(path), entry['video_id'] + '.mp4')
      with av.open(path) as container:
        stream = container.streams.video[0]
        self.assertEqual(stream.codec_context.name, 'h264')
        self.assertEqual(stream.average_rate, 25)
        frames = [f.to_ndarray(format='rgb24') for f in container.decode(stream)]
      self.assertEqual(np.stack(frames).shape, (8, 32, 32, 3))
      self.assertEqual(entry['segment_starts'][0], 0)

  def test_splits_are_disjoint(self):
    output_dir, manifest = self._generate('splits')
    videos = {s: [] for s in demo_dataset.SPLITS}
    for entry in manifest['videos']:
      videos[entry['split']].append(demo_dataset.decode_video(os.path.join(output_dir, entry['path'])))
    ids = [{v['video_id'] for v in manifest['videos'] if v['split'] == s} for s in demo_dataset.SPLITS]
    self.assertEqual(sum(len(i) for i in ids), len(set.union(*ids)))
    for i, split_a in enumerate(demo_dataset.SPLITS):
      for split_b in demo_dataset.SPLITS[i + 1:]:
        for a in videos[split_a]:
          for b in videos[split_b]:
            # Independent random content: different objects, backgrounds and positions everywhere.
            self.assertGreater(np.abs(a.astype(np.int32) - b).mean(), 10.0)

  def test_deterministic_by_seed_whatever_the_worker_count(self):
    dir_a, manifest_a = self._generate('seed0_one_worker', num_workers=1)
    dir_b, manifest_b = self._generate('seed0_two_workers', num_workers=2)
    dir_c, _ = self._generate('seed1', seed=1)
    self.assertEqual(manifest_a, manifest_b)
    for entry in manifest_a['videos']:
      with open(os.path.join(dir_a, entry['path']), 'rb') as f:
        bytes_a = f.read()
      with open(os.path.join(dir_b, entry['path']), 'rb') as f:
        self.assertEqual(bytes_a, f.read(), entry['path'])
      other = os.path.join(dir_c, entry['path'])
      if os.path.exists(other):  # Seed 1 may put this video id in another class folder.
        with open(other, 'rb') as f:
          self.assertNotEqual(bytes_a, f.read())

  def test_same_pixels_and_bytes_on_every_cpu_code_path(self):
    # The worker-count test cannot see CPU dependence on one machine; forcing the older code paths can. Before the
    # renderers used data_tools.synthetic.portable_math, NumPy's AVX-512 and AVX2 sin/cos/arctan2 gave different pixels.
    fingerprints = {}
    for name, overrides in _CPU_CODE_PATHS.items():
      env = {k: v for k, v in os.environ.items() if k not in ('NPY_DISABLE_CPU_FEATURES', 'OPENBLAS_CORETYPE',
                                                              'GLIBC_TUNABLES')}
      env.update(overrides, PYTHONPATH=_REPO_ROOT)
      result = subprocess.run([sys.executable, '-c', _FINGERPRINT_SCRIPT], env=env, cwd=_REPO_ROOT,
                              capture_output=True, text=True, timeout=300, check=False)
      self.assertEqual(result.returncode, 0, result.stderr[-2000:])
      fingerprints[name] = result.stdout.split()
    for name, fingerprint in fingerprints.items():
      self.assertEqual(fingerprint, fingerprints['native'], f'{name} differs from native: {fingerprints}')

  def test_encoder_gives_the_same_bytes_every_time_in_one_process(self):
    # x264's assembly gave up to 7 different streams for the same frames in 40 encodes on an AVX-512 CPU.
    spec = demo_dataset.video_spec(0, 'train', 2, 'move_000deg', num_frames=24, frame_size=32, min_segments=2,
                                   max_segments=3)
    frames = demo_dataset.render_video(spec)
    digests = set()
    with tempfile.TemporaryDirectory(dir=self.get_temp_dir()) as tmp:
      for attempt in range(30):
        path = os.path.join(tmp, f'{attempt}.mp4')
        demo_dataset.encode_video(frames, path, fps=25, crf=12)
        with open(path, 'rb') as f:
          digests.add(hashlib.sha256(f.read()).hexdigest())
    self.assertLen(digests, 1)

  def test_first_frame_does_not_depend_on_the_class(self):
    # Same random stream, every class: the content is drawn identically and only the motion differs, so the
    # first frame is pixel-identical across classes (no single-frame shortcut by construction).
    first_frames = []
    for class_name in demo_dataset.CLASS_NAMES:
      spec = demo_dataset.sample_video_spec(np.random.default_rng(7), class_name, num_frames=6, frame_size=32)
      frames = demo_dataset.render_video(spec)
      self.assertEqual(frames.shape, (6, 32, 32, 3))
      self.assertEqual(frames.dtype, np.uint8)
      first_frames.append(frames[0])
    for frame in first_frames[1:]:
      self.assertAllEqual(frame, first_frames[0])

  def test_segments_and_colours(self):
    luma = np.array([0.299, 0.587, 0.114])
    for index in range(200):
      spec = demo_dataset.video_spec(3, 'train', index, demo_dataset.CLASS_NAMES[index % 8], num_frames=48,
                                     frame_size=32, min_segments=2, max_segments=3)
      starts = np.array(spec.segment_starts + (48,))
      self.assertIn(len(spec.segment_starts), (2, 3))
      self.assertEqual(starts[0], 0)
      self.assertGreaterEqual(np.diff(starts).min(), 8)  # Every segment >= num_frames // 6.
      self.assertLen(spec.appearances, len(spec.segment_starts))
      for app in spec.appearances:
        # The two colours differ in brightness, so a turn stays visible after greyscale augmentation.
        self.assertGreaterEqual(abs(luma @ np.array(app.colour_1) - luma @ np.array(app.colour_2)), 0.2 - 1e-9)
    one_segment = demo_dataset.video_spec(3, 'train', 0, 'rotate_cw', 48, 32, min_segments=1, max_segments=1)
    self.assertEqual(one_segment.segment_starts, (0,))

  def test_motion_matches_the_class(self):
    num_frames = 16
    output_dir, manifest = self._generate('motion', num_train=24, num_val=0, num_test=0, num_frames=num_frames)
    for entry in manifest['videos']:
      frames = _grey(demo_dataset.decode_video(os.path.join(output_dir, entry['path'])))
      steps, speeds = _within_segment_steps(entry, num_frames)
      shifts = np.array([_translation(frames[t], frames[t + 1]) for t in steps])
      if entry['class'].startswith('move_'):
        angle = np.deg2rad(int(entry['class'][len('move_'):len('move_') + 3]))
        expected = speeds[:, None] * np.array([np.cos(angle), -np.sin(angle)])  # Screen y points down.
        error = np.median(np.abs(shifts - expected), axis=0)
        self.assertLessEqual(error.max(), 0.4, msg=f'{entry["path"]}: shifts {shifts.tolist()}')
        self.assertTrue(np.all((speeds >= 1.0) & (speeds <= 1.6)))
      else:
        self.assertLessEqual(np.median(np.abs(shifts), axis=0).max(), 0.4, msg=f'{entry["path"]} should not move')
        # The rotation centre on screen: the object's position minus the camera shake.
        index = int(entry['video_id'].split('_')[1])
        spec = demo_dataset.video_spec(0, 'train', index, entry['class'], num_frames, 32, 2, 3)
        centres = demo_dataset.object_trajectory(spec)[0] - demo_dataset.camera_offset(spec)
        turns = np.array([_rotation(frames[t], frames[t + 1], centres[t], centres[t + 1]) for t in steps])
        sense = 1.0 if entry['class'] == 'rotate_ccw' else -1.0
        self.assertLess(abs(np.median(turns - sense * speeds)), 0.06, msg=f'{entry["path"]}: {turns}')
        self.assertTrue(np.all((speeds >= 0.15) & (speeds <= 0.25)))

  def test_resume_after_interruption(self):
    output_dir, manifest = self._generate('resume')
    victim = os.path.join(output_dir, manifest['videos'][4]['path'])
    with open(victim, 'rb') as f:
      original = f.read()
    # An interrupted run: one video never renamed into place, a partial temporary file left behind.
    os.remove(victim)
    os.makedirs(os.path.join(output_dir, '.partial'))
    with open(os.path.join(output_dir, '.partial', 'train_000004.mp4.123'), 'wb') as f:
      f.write(original[:100])
    untouched = os.path.join(output_dir, manifest['videos'][0]['path'])
    mtime = os.path.getmtime(untouched)
    resumed = demo_dataset.generate_dataset(output_dir, **_TINY)
    self.assertEqual(resumed, manifest)
    with open(victim, 'rb') as f:
      self.assertEqual(f.read(), original)
    self.assertEqual(os.path.getmtime(untouched), mtime)  # Finished videos are not redone.
    self.assertFalse(os.path.exists(os.path.join(output_dir, '.partial')))

  def test_refuses_a_folder_it_did_not_write_or_other_parameters(self):
    output_dir, _ = self._generate('refuse')
    with self.assertRaisesRegex(errors.UserInputError, 'num_frames'):
      demo_dataset.generate_dataset(output_dir, **{**_TINY, 'num_frames': 10})
    foreign = os.path.join(self.get_temp_dir(), 'foreign')
    os.makedirs(foreign)
    with open(os.path.join(foreign, 'notes.txt'), 'w') as f:
      f.write('not a demo dataset')
    with self.assertRaisesRegex(errors.UserInputError, 'not empty'):
      demo_dataset.generate_dataset(foreign, **_TINY)

  @parameterized.named_parameters(
      ('odd_frame_size', dict(frame_size=33), 'frame_size'),
      ('one_frame', dict(num_frames=1), 'num_frames'),
      ('segments', dict(min_segments=3, max_segments=2), 'min_segments'),
      ('negative_count', dict(num_val=-1), 'num_val'))
  def test_bad_arguments(self, overrides, message):
    with self.assertRaisesRegex(errors.UserInputError, message):
      demo_dataset.generate_dataset(os.path.join(self.get_temp_dir(), 'bad'), **{**_TINY, **overrides})


class CalibrateDemoTest(tf.test.TestCase):

  def test_sample_clips(self):
    videos = np.arange(2 * 10 * 2 * 2 * 3, dtype=np.uint8).reshape(2, 10, 2, 2, 3)
    starts = np.array([1, 4])
    clips = calibrate_demo.sample_clips(videos, starts, clip_length=3, frame_stride=2, mode='video')
    self.assertAllClose(clips[0], videos[0, [1, 3, 5]] / 255.0)
    self.assertAllClose(clips[1], videos[1, [4, 6, 8]] / 255.0)
    single = calibrate_demo.sample_clips(videos, starts, clip_length=3, frame_stride=2, mode='single_frame')
    self.assertAllClose(single[1], videos[1, [4, 4, 4]] / 255.0)

  def test_loads_split_and_runs(self):
    output_dir = os.path.join(self.get_temp_dir(), 'calibrate')
    demo_dataset.generate_dataset(output_dir, **_TINY)
    videos, labels, class_names = calibrate_demo.load_split(output_dir, 'train')
    self.assertEqual(class_names, list(demo_dataset.CLASS_NAMES))
    self.assertEqual(videos.shape, (8, 8, 32, 32, 3))
    self.assertAllEqual(sorted(labels), list(range(8)))
    result = calibrate_demo.calibrate((videos, labels), (videos, labels), 8, 'video', train_seconds=0.5,
                                      batch_size=4, clip_length=4)
    self.assertGreaterEqual(result['steps'], 1)
    self.assertEqual(np.sum(result['confusion']), 8)
    self.assertEqual(result['chance'], 0.125)
    with self.assertRaisesRegex(errors.UserInputError, 'does not exist'):
      calibrate_demo.load_split(output_dir, 'missing_split')


if __name__ == '__main__':
  tf.test.main()
