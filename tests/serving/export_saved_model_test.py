"""Tests of the SavedModel export (signatures, warm-up records, bad inputs) and of the feature-extraction CLI.

One export is shared by every test of this module (a SavedModel export takes ~10 s): the demo backbone (R3D-18,
width 0.25, no stem pool) trained on clips of 4 frames at stride 2 and 32x32, with `serve_examples` averaging 2
clips. Its checkpoint is written the way Model Garden's trainer writes one (`Checkpoint(model=m,
**m.checkpoint_items)`) from a model built by the pretraining task, whose batch-norm moving statistics are
randomised first so that inference-mode batch norm and the restore both matter. The reference for every output is
that Keras model, called on clips preprocessed by the test itself.
"""
import atexit
import contextlib
import functools
import io
import json
import os
import subprocess
import sys
import textwrap
import time
import types

import av
import numpy as np
import tensorflow as tf

from official.core import task_factory
from official_cvrl import extract_features
from official_cvrl.dataloaders import feature_keys
from official_cvrl.serving import export_module
from official_cvrl.serving import export_saved_model
from official_cvrl.utils import errors

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_EXPERIMENT = 'cvrl_pretrain_demo'
_OVERRIDE = 'task.train_data.feature_shape=[4,32,32,3],task.validation_data.feature_shape=[4,32,32,3]'
_NUM_FRAMES, _STRIDE, _CROP, _NUM_CLIPS = 4, 2, 32, 2
_SPAN = (_NUM_FRAMES - 1) * _STRIDE + 1
_TOLERANCE = 1e-5


def _randomize_batch_norm(model, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    if 'moving_mean' in variable.name:
      variable.assign(rng.normal(0.0, 0.1, variable.shape).astype(np.float32))
    elif 'moving_variance' in variable.name:
      variable.assign(rng.uniform(0.5, 2.0, variable.shape).astype(np.float32))


_FRESH_PROCESS_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf
    loaded = tf.saved_model.load(sys.argv[1])
    results = {}
    for name in ('square', 'wide'):
      clips = np.load(f'{sys.argv[2]}/{name}.npy')
      for key, value in loaded.signatures['serving_default'](clips=tf.constant(clips)).items():
        results[f'{name}/{key}'] = value.numpy()
    results['modules'] = np.array(sorted(m for m in sys.modules
                                         if m.split('.')[0] in ('official_cvrl', 'official', 'data_tools')))
    np.savez(f'{sys.argv[2]}/fresh.npz', **results)
    """)


class _Background:
  """A subprocess started early, so it runs while the in-process tests do; `result()` waits for it."""

  def __init__(self, command, **kwargs):
    self._process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)
    self._output = None
    atexit.register(self._stop)  # When a test filter skipped the test that waits for it.

  def _stop(self) -> None:
    if self._process.poll() is None:
      self._process.kill()
      self._process.wait()

  def result(self) -> str:
    if self._output is None:
      stdout, stderr = self._process.communicate(timeout=600)
      if self._process.returncode:
        raise AssertionError(f'{self._process.args[:3]} failed ({self._process.returncode}):\n{stderr[-3000:]}')
      self._output = stdout
    return self._output


@functools.lru_cache(maxsize=None)
def _shared_export():
  """Builds the reference model, writes its checkpoint and exports it once per test process, then starts the
  subprocess checks (fresh Python process, saved_model_cli show / run) in the background."""
  root = os.path.join(tf.compat.v1.test.get_temp_dir(), 'shared_export')
  params = export_saved_model.load_experiment_config(_EXPERIMENT, None, _OVERRIDE)
  model = task_factory.get_task(params.task).build_model()
  _randomize_batch_norm(model)
  tf.train.Checkpoint(model=model, **model.checkpoint_items).save(os.path.join(root, 'model_dir', 'ckpt'))
  path = export_saved_model.run_export(_EXPERIMENT, os.path.join(root, 'model_dir'), os.path.join(root, 'export'),
                                       params_override=_OVERRIDE, num_clips=_NUM_CLIPS)
  work = os.path.join(root, 'subprocesses')
  os.makedirs(work)
  inputs = {'square': _random_clips([2, _NUM_FRAMES, 32, 32, 3], seed=1),
            'wide': _random_clips([1, _NUM_FRAMES, 40, 56, 3], seed=2),
            'cli': _random_clips([1, _NUM_FRAMES, 36, 32, 3], seed=3)}
  for name, clips in inputs.items():
    np.save(os.path.join(work, f'{name}.npy'), clips)
  # No PYTHONPATH and another working directory: the fresh process cannot import this repository.
  env = {k: v for k, v in os.environ.items() if k != 'PYTHONPATH'}
  env['TF_CPP_MIN_LOG_LEVEL'] = '2'
  cli = os.path.join(os.path.dirname(sys.executable), 'saved_model_cli')
  background = {
      'fresh': _Background([sys.executable, '-c', _FRESH_PROCESS_SCRIPT, path, work], cwd=work, env=env),
      'show': _Background([cli, 'show', '--dir', path, '--all'], env=env),
      'run': _Background([cli, 'run', '--dir', path, '--tag_set', 'serve', '--signature_def', 'serving_default',
                          '--inputs', f'clips={work}/cli.npy', '--outdir', os.path.join(work, 'cli_out')], env=env),
  }
  return types.SimpleNamespace(root=root, model=model, path=path, loaded=tf.saved_model.load(path), work=work,
                               inputs=inputs, background=background)


def _random_clips(shape, seed: int) -> np.ndarray:
  return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _reference_preprocess(clips: np.ndarray) -> np.ndarray:
  """uint8 [B, T, H, W, 3] -> float32 [B, T, 32, 32, 3] in [0, 1]: the centre square of the short side, resized
  to 32 (bilinear, rounded half up to uint8), divided by 255."""
  batch, frames, height, width, _ = clips.shape
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  square = clips[:, :, top:top + side, left:left + side].reshape([-1, side, side, 3])
  # float32 like the op under test, so that values at .5 round the same way.
  resized = np.floor(tf.image.resize(square, [_CROP, _CROP]).numpy() + np.float32(0.5)).astype(np.uint8)
  return (resized.reshape([batch, frames, _CROP, _CROP, 3]) / 255.0).astype(np.float32)


def _reference_outputs(model, clips: np.ndarray) -> dict:
  outputs = model(_reference_preprocess(clips), training=False)
  features = outputs['features'].numpy().astype(np.float64)
  return {'features': features, 'projection': outputs['projection'].numpy(),
          'normalized_features': features / np.linalg.norm(features, axis=1, keepdims=True)}


def _textured_frames(num_frames: int, height: int, width: int, seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  yy, xx = np.mgrid[0:height, 0:width]
  frames = [np.stack([128 + 100 * np.sin((xx + 3 * i) / (4.0 + c + seed) + yy / 6.0) for c in range(3)], -1)
            + rng.normal(0, 8, (height, width, 3)) for i in range(num_frames)]
  return np.clip(np.round(frames), 0, 255).astype(np.uint8)


def _sequence_example(frames: np.ndarray, video_id: str, label: int) -> bytes:
  jpegs = [tf.io.encode_jpeg(f, quality=95).numpy() for f in frames]
  return tf.train.SequenceExample(
      context=tf.train.Features(feature={
          feature_keys.VIDEO_ID_KEY: tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode()])),
          feature_keys.LABEL_INDEX_KEY: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
      }),
      feature_lists=tf.train.FeatureLists(feature_list={
          feature_keys.IMAGE_KEY: tf.train.FeatureList(
              feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[j])) for j in jpegs])
      })).SerializeToString()


def _evenly_spaced_indices(num_video_frames: int, num_clips: int) -> np.ndarray:
  """Independent reference of the clip sampling: starts 0 .. N - span evenly (floor), stride 2, looping."""
  max_start = max(num_video_frames - _SPAN, 0)
  starts = [i * max_start // (num_clips - 1) for i in range(num_clips)] if num_clips > 1 else [max_start // 2]
  return np.array([[(s + k * _STRIDE) % num_video_frames for k in range(_NUM_FRAMES)] for s in starts])


def _write_video(path: str, frames: np.ndarray, fps: int = 25) -> str:
  with av.open(path, 'w') as container:
    stream = container.add_stream('libx264', rate=fps)
    stream.height, stream.width = frames.shape[1:3]
    stream.pix_fmt = 'yuv420p'
    for frame in frames:
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


class ExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.shared = _shared_export()
    cls.root, cls.model, cls.path, cls.loaded = cls.shared.root, cls.shared.model, cls.shared.path, cls.shared.loaded

  def test_versioned_layout_with_warmup_and_config(self):
    export_dir = os.path.dirname(self.path)
    self.assertEqual(os.listdir(export_dir), [os.path.basename(self.path)])  # No temporary folder left.
    self.assertTrue(os.path.basename(self.path).isdigit())
    self.assertCountEqual(os.listdir(os.path.join(self.path, 'assets.extra')),
                          ['tf_serving_warmup_requests', 'params.yaml'])
    self.assertEqual([int(self.loaded.num_frames), int(self.loaded.temporal_stride), int(self.loaded.crop_size),
                      int(self.loaded.num_clips)], [_NUM_FRAMES, _STRIDE, _CROP, _NUM_CLIPS])

  def test_new_version_skips_existing_versions(self):
    export_dir = self.get_temp_dir()
    now = int(time.time())
    for version in range(now, now + 3):
      os.makedirs(os.path.join(export_dir, str(version)))
    version = export_saved_model._new_version(export_dir)  # pylint: disable=protected-access
    self.assertGreaterEqual(version, now + 3)
    self.assertFalse(os.path.exists(os.path.join(export_dir, str(version))))

  def test_fresh_process_without_our_package_matches_keras(self):
    self.shared.background['fresh'].result()
    fresh = np.load(os.path.join(self.shared.work, 'fresh.npz'))
    self.assertEmpty(fresh['modules'].tolist())
    for name in ('square', 'wide'):
      clips = self.shared.inputs[name]
      reference = _reference_outputs(self.model, clips)
      self.assertEqual(fresh[f'{name}/features'].shape, (len(clips), 128))  # 512 * 0.25 channels.
      for key in ('features', 'normalized_features', 'projection'):
        self.assertAllClose(fresh[f'{name}/{key}'], reference[key], atol=_TOLERANCE, rtol=0, msg=f'{name}/{key}')

  def test_saved_model_cli_show_lists_signatures(self):
    shown = self.shared.background['show'].result()
    for signature in ('serving_default', 'serve_video_clips', 'serve_examples'):
      self.assertIn(f"signature_def['{signature}']", shown)
    self.assertIn("inputs['clips'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, -1, -1, -1, 3)", shown)
    self.assertIn("inputs['clips'] tensor_info:\n        dtype: DT_UINT8\n        shape: (-1, -1, -1, -1, -1, 3)",
                  shown)
    self.assertIn("inputs['examples'] tensor_info:\n        dtype: DT_STRING\n        shape: (-1)", shown)
    for output in ('features', 'normalized_features', 'projection', 'video_id', 'label'):
      self.assertIn(f"outputs['{output}']", shown)

  def test_saved_model_cli_run_matches_keras(self):
    self.shared.background['run'].result()
    reference = _reference_outputs(self.model, self.shared.inputs['cli'])
    for key in ('features', 'normalized_features', 'projection'):
      self.assertAllClose(np.load(os.path.join(self.shared.work, 'cli_out', f'{key}.npy')), reference[key],
                          atol=_TOLERANCE, rtol=0)

  def test_warmup_requests_parse_and_run(self):
    from tensorflow_serving.apis import prediction_log_pb2  # pylint: disable=g-import-not-at-top
    path = os.path.join(self.path, 'assets.extra', 'tf_serving_warmup_requests')
    signatures = []
    for record in tf.data.TFRecordDataset(path):
      log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
      request = log.predict_log.request
      signatures.append(request.model_spec.signature_name)
      inputs = {name: tf.constant(tf.make_ndarray(proto)) for name, proto in request.inputs.items()}
      outputs = self.loaded.signatures[request.model_spec.signature_name](**inputs)
      self.assertEqual(outputs['features'].shape, (1, 128))
      self.assertTrue(np.all(np.isfinite(outputs['projection'].numpy())))
    self.assertEqual(signatures, ['serving_default', 'serve_video_clips', 'serve_examples'])

  def test_video_clips_signature_averages_clips(self):
    clips = _random_clips([2, 3, _NUM_FRAMES, 32, 32, 3], seed=4)
    averaged = self.loaded.signatures['serve_video_clips'](clips=tf.constant(clips))
    reference = _reference_outputs(self.model, clips.reshape([6, _NUM_FRAMES, 32, 32, 3]))
    features = reference['features'].reshape([2, 3, -1]).mean(axis=1)
    self.assertAllClose(averaged['features'], features, atol=_TOLERANCE, rtol=0)
    self.assertAllClose(averaged['normalized_features'],
                        features / np.linalg.norm(features, axis=1, keepdims=True), atol=_TOLERANCE, rtol=0)
    self.assertAllClose(averaged['projection'], reference['projection'].reshape([2, 3, -1]).mean(axis=1),
                        atol=_TOLERANCE, rtol=0)

  def test_examples_signature_samples_evenly_spaced_clips(self):
    videos = [_textured_frames(12, 40, 48, seed=5), _textured_frames(5, 32, 32, seed=6)]  # The 2nd one loops.
    examples = [_sequence_example(videos[0], 'a/one.mp4', 3), _sequence_example(videos[1], 'b/two.mp4', 7)]
    outputs = self.loaded.signatures['serve_examples'](examples=tf.constant(examples))
    self.assertEqual(outputs['video_id'].numpy().tolist(), [b'a/one.mp4', b'b/two.mp4'])
    self.assertEqual(outputs['label'].numpy().tolist(), [3, 7])
    for i, frames in enumerate(videos):
      decoded = np.stack([tf.io.decode_jpeg(tf.io.encode_jpeg(f, quality=95)).numpy() for f in frames])
      clips = decoded[_evenly_spaced_indices(len(frames), _NUM_CLIPS)]
      features = _reference_outputs(self.model, clips)['features'].mean(axis=0)
      self.assertAllClose(outputs['features'][i], features, atol=_TOLERANCE, rtol=0)

  def test_examples_with_three_crops_average_both_ends_and_centre(self):
    module = export_module.CVRLExportModule(None, self.model, _NUM_FRAMES, _STRIDE, _CROP, num_clips=_NUM_CLIPS,
                                            num_crops=3)
    frames = _textured_frames(10, 32, 56, seed=15)  # Landscape: squares of side 32 at x = 0, 12 and 24.
    outputs = module.serve_examples(tf.constant([_sequence_example(frames, 'wide', 1)]))
    decoded = np.stack([tf.io.decode_jpeg(tf.io.encode_jpeg(f, quality=95)).numpy() for f in frames])
    clips = decoded[_evenly_spaced_indices(len(frames), _NUM_CLIPS)]
    views = np.concatenate([clips[:, :, :, left:left + 32] for left in (0, 12, 24)])
    features = _reference_outputs(self.model, views)['features'].mean(axis=0)
    self.assertAllClose(outputs['features'][0], features, atol=_TOLERANCE, rtol=0)
    with self.assertRaisesRegex(ValueError, 'num_crops must be 1 or 3, got 2'):
      export_module.CVRLExportModule(None, self.model, _NUM_FRAMES, _STRIDE, _CROP, num_crops=2)

  def test_bad_inputs_give_clear_errors(self):
    serve = self.loaded.signatures['serving_default']
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r'Shape of tensor clips \[2,32,32,3\] is not compatible with expected shape '
                                r'\[\?,\?,\?,\?,3\]'):
      serve(clips=tf.zeros([2, 32, 32, 3], tf.uint8))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'expected to be a uint8 tensor but is a float'):
      serve(clips=tf.zeros([1, _NUM_FRAMES, 32, 32, 3], tf.float32))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError,
                                r'Bad clips input: expected uint8 clips \[batch, T, H, W, 3\] with T, H, W >= 1; '
                                r'got shape\] \[1 0 32 32 3\]'):
      serve(clips=tf.zeros([1, 0, 32, 32, 3], tf.uint8))
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'num_clips, T, H, W >= 1; got shape\] \[1 0 4'):
      self.loaded.signatures['serve_video_clips'](clips=tf.zeros([1, 0, 4, 32, 32, 3], tf.uint8))
    empty_video = tf.train.SequenceExample(feature_lists=tf.train.FeatureLists(feature_list={
        feature_keys.IMAGE_KEY: tf.train.FeatureList(feature=[])})).SerializeToString()
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'A video has no frames'):
      self.loaded.signatures['serve_examples'](examples=tf.constant([empty_video]))


class ExportErrorsTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    shared = _shared_export()
    cls.root, cls.model, cls.path = shared.root, shared.model, shared.path

  def test_missing_checkpoint(self):
    empty = self.get_temp_dir()
    with self.assertRaisesRegex(errors.UserInputError, r'is a folder without a checkpoint'):
      export_saved_model.resolve_checkpoint(empty)
    with self.assertRaisesRegex(errors.UserInputError, r'ckpt-7\.index does not exist'):
      export_saved_model.resolve_checkpoint(os.path.join(empty, 'ckpt-7'))

  def test_mismatched_checkpoint_lists_variables(self):
    override = _OVERRIDE + ',task.model.projection_head.output_dim=64'
    export_dir = os.path.join(self.get_temp_dir(), 'export')
    with self.assertRaises(errors.UserInputError) as raised:
      export_saved_model.run_export(_EXPERIMENT, os.path.join(self.root, 'model_dir'), export_dir,
                                    params_override=override)
    message = str(raised.exception)
    self.assertRegex(message, r'2 variable\(s\) with another shape in the checkpoint')
    self.assertRegex(message, r'kernel/\.ATTRIBUTES/VARIABLE_VALUE \[512, 64\] vs \[512, 128\]')
    self.assertFalse(os.path.exists(export_dir) and os.listdir(export_dir))  # Nothing half-written.

  def test_unknown_config_key(self):
    with self.assertRaisesRegex(errors.UserInputError, r'invalid experiment configuration'):
      export_saved_model.load_experiment_config(_EXPERIMENT, None, 'task.model.no_such_key=1')
    with self.assertRaisesRegex(errors.UserInputError, r'not a registered experiment'):
      export_saved_model.load_experiment_config('cvrl_no_such_experiment')


class ExportDirTest(tf.test.TestCase):
  """The export folder as a user meets it: a file in its place, a killed export's leftovers, odd versions."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.model_dir = os.path.join(_shared_export().root, 'model_dir')

  def _cli(self, export_dir):
    return [sys.executable, '-m', 'official_cvrl.serving.export_saved_model', f'--experiment={_EXPERIMENT}',
            f'--checkpoint_path={self.model_dir}', f'--export_dir={export_dir}', f'--params_override={_OVERRIDE}']

  def test_export_dir_that_is_a_file_is_one_line(self):
    existing = os.path.join(self.get_temp_dir(), 'models.txt')
    with open(existing, 'w') as f:
      f.write('my notes')
    result = subprocess.run(self._cli(existing), capture_output=True, text=True, timeout=300, cwd=_REPO_ROOT,
                            env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    self.assertEqual(result.returncode, 2, result.stderr[-3000:])
    error_lines = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
    self.assertEqual(error_lines, [f'error: --export_dir={existing} is an existing file, not a folder. Pass a '
                                   'folder: each export is written to <export_dir>/<version>/.'])
    self.assertNotIn('Traceback', result.stderr)
    with open(existing) as f:
      self.assertEqual(f.read(), 'my notes')
    with self.assertRaisesRegex(errors.UserInputError, r'models\.txt/sub cannot be created'):
      export_saved_model.check_export_dir(os.path.join(existing, 'sub'))

  def test_killed_export_is_cleaned_up_and_new_version_is_served(self):
    export_dir = os.path.join(self.get_temp_dir(), 'export')
    process = subprocess.Popen(self._cli(export_dir), cwd=_REPO_ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2'))
    deadline = time.time() + 240
    temporaries = []
    while not temporaries and time.time() < deadline and process.poll() is None:
      time.sleep(0.02)
      temporaries = [n for n in os.listdir(export_dir) if n.startswith('.tmp-')] if os.path.isdir(
          export_dir) else []
    process.kill()  # SIGKILL while the SavedModel is being written.
    process.wait()
    self.assertLen(temporaries, 1, 'the export should be killed while writing its temporary folder')
    self.assertEqual(temporaries[0].rsplit('-', 1)[1], str(process.pid))
    self.assertTrue(os.path.isdir(os.path.join(export_dir, temporaries[0])))
    # A version from a clock far ahead, and the temporary of an export still running (this test's parent).
    ahead = int(time.time()) + 10**6
    os.makedirs(os.path.join(export_dir, str(ahead)))
    running = f'.tmp-{ahead}-{os.getppid()}'
    os.makedirs(os.path.join(export_dir, running))
    path = export_saved_model.run_export(_EXPERIMENT, self.model_dir, export_dir, params_override=_OVERRIDE)
    self.assertEqual(path, os.path.join(export_dir, str(ahead + 1)))  # TF Serving serves the highest version.
    self.assertCountEqual(os.listdir(export_dir), [str(ahead), str(ahead + 1), running])
    self.assertEqual(export_saved_model.existing_versions(export_dir), [ahead, ahead + 1])


class ClassifierModuleTest(tf.test.TestCase):

  def test_classifier_outputs_features_logits_probabilities(self):
    from official.vision.modeling import factory_3d  # pylint: disable=g-import-not-at-top
    from official_cvrl.configs import backbones as backbones_cfg  # pylint: disable=g-import-not-at-top
    from official_cvrl.configs import cvrl as cvrl_cfg  # pylint: disable=g-import-not-at-top
    import tf_keras  # pylint: disable=g-import-not-at-top
    config = backbones_cfg.VideoClassifierModel(backbone=cvrl_cfg.demo_backbone(), normalize_features=True)
    model = factory_3d.build_model('cvrl_classifier', tf_keras.layers.InputSpec(shape=[None, None, 32, 32, 3]),
                                   config, num_classes=5)
    _randomize_batch_norm(model, seed=1)
    module = export_module.CVRLExportModule(None, model, _NUM_FRAMES, _STRIDE, _CROP)
    clips = _random_clips([2, _NUM_FRAMES, 32, 40, 3], seed=8)
    outputs = module.serve(tf.constant(clips))
    self.assertCountEqual(outputs, ['features', 'normalized_features', 'logits', 'probabilities'])
    images = _reference_preprocess(clips)
    logits = model(images, training=False).numpy().astype(np.float64)
    pooled = model.backbone(images, training=False)['5'].numpy().astype(np.float64).mean(axis=(1, 2, 3))
    probabilities = np.exp(logits - logits.max(axis=1, keepdims=True))
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    self.assertAllClose(outputs['logits'], logits, atol=_TOLERANCE, rtol=0)
    self.assertAllClose(outputs['probabilities'], probabilities, atol=_TOLERANCE, rtol=0)
    self.assertAllClose(outputs['features'], pooled, atol=_TOLERANCE, rtol=0)


class ExtractFeaturesTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.shared = _shared_export()
    cls.root, cls.model, cls.path, cls.loaded = cls.shared.root, cls.shared.model, cls.shared.path, cls.shared.loaded

  def _run(self, **kwargs):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
      count = extract_features.run(os.path.dirname(self.path), progress_interval=0, **kwargs)
    return count, stderr.getvalue()

  def test_video_files_with_a_corrupt_one(self):
    root = os.path.join(self.get_temp_dir(), 'videos')
    videos = {'jump/a.mp4': _textured_frames(12, 24, 40, seed=9), 'jump/b.mp4': _textured_frames(9, 32, 32, seed=10),
              'run/c.mp4': _textured_frames(3, 48, 32, seed=11)}
    for relative, frames in videos.items():
      os.makedirs(os.path.dirname(os.path.join(root, relative)), exist_ok=True)
      _write_video(os.path.join(root, relative), frames)
    with open(os.path.join(root, 'run', 'broken.mp4'), 'wb') as f:
      f.write(b'\x00\x00\x00\x18ftypmp42' + bytes(range(256)) * 4)
    output = os.path.join(self.get_temp_dir(), 'out', 'embeddings.npz')
    count, log = self._run(input_path=root, output=output, input_format='class_folders', num_clips=2,
                           batch_size=2)
    self.assertEqual(count, 3)
    self.assertRegex(log, r'failed: run/broken\.mp4: unreadable: .*broken\.mp4')
    with open(output + '.failures.jsonl') as f:
      failures = [json.loads(line) for line in f]
    self.assertEqual([(x['video_id'], x['reason']) for x in failures], [('run/broken.mp4', 'unreadable')])
    result = np.load(output)
    self.assertEqual(result['video_ids'].tolist(), ['jump/a.mp4', 'jump/b.mp4', 'run/c.mp4'])
    self.assertEqual(result['labels'].tolist(), [0, 0, 1])
    self.assertEqual(result['class_names'].tolist(), ['jump', 'run'])
    self.assertEqual(result['features'].shape, (3, 128))
    # Reference: decode the file at 25 fps with the short side at 32, centre square, evenly spaced clips.
    from data_tools import video_reader  # pylint: disable=g-import-not-at-top
    for i, relative in enumerate(result['video_ids']):
      frames, _ = video_reader.read_video(os.path.join(root, relative), fps=25, short_side=32)
      self.assertEqual(len(frames), len(videos[relative]))
      top, left = (frames.shape[1] - 32) // 2, (frames.shape[2] - 32) // 2
      frames = frames[:, top:top + 32, left:left + 32]
      reference = _reference_outputs(self.model, frames[_evenly_spaced_indices(len(frames), 2)])
      self.assertAllClose(result['features'][i], reference['features'].mean(axis=0), atol=_TOLERANCE, rtol=0)

  def test_video_file_with_three_crops(self):
    root = os.path.join(self.get_temp_dir(), 'three_crops')
    os.makedirs(root)
    path = _write_video(os.path.join(root, 'wide.mp4'), _textured_frames(9, 32, 48, seed=16))
    output = os.path.join(self.get_temp_dir(), 'three_crops.npz')
    count, _ = self._run(input_path=root, output=output, num_clips=2, num_crops=3)
    self.assertEqual(count, 1)
    result = np.load(output)
    self.assertEqual((int(result['num_clips']), int(result['num_crops'])), (2, 3))
    from data_tools import video_reader  # pylint: disable=g-import-not-at-top
    frames, _ = video_reader.read_video(path, fps=25, short_side=32)
    clips = frames[_evenly_spaced_indices(len(frames), 2)]
    left_room = frames.shape[2] - 32
    views = np.concatenate([clips[:, :, :, left:left + 32] for left in (0, left_room // 2, left_room)])
    reference = _reference_outputs(self.model, views)['features'].mean(axis=0)
    self.assertAllClose(result['features'][0], reference, atol=_TOLERANCE, rtol=0)

  def test_tfrecords_match_examples_signature_and_skip_bad_records(self):
    videos = [_textured_frames(10, 36, 36, seed=12), _textured_frames(8, 32, 48, seed=13),
              _textured_frames(6, 32, 32, seed=14)]
    good = [_sequence_example(frames, f'v{i}', i + 1) for i, frames in enumerate(videos)]
    bad = tf.train.SequenceExample(
        context=tf.train.Features(feature={feature_keys.VIDEO_ID_KEY: tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[b'bad_jpeg']))}),
        feature_lists=tf.train.FeatureLists(feature_list={feature_keys.IMAGE_KEY: tf.train.FeatureList(
            feature=[tf.train.Feature(bytes_list=tf.train.BytesList(value=[b'not a jpeg']))])})).SerializeToString()
    first, second = (os.path.join(self.get_temp_dir(), f'val-0000{i}-of-00002.tfrecord') for i in range(2))
    with tf.io.TFRecordWriter(first) as writer:
      for record in (good[0], bad, good[1]):
        writer.write(record)
    with tf.io.TFRecordWriter(second) as writer:
      for record in (good[2], good[0]):
        writer.write(record)
    with open(second, 'r+b') as f:  # Truncate the second file inside its last record.
      f.truncate(os.path.getsize(second) - 20)
    output = os.path.join(self.get_temp_dir(), 'val.tfrecord')
    count, log = self._run(input_path=os.path.join(self.get_temp_dir(), 'val-*.tfrecord'), output=output,
                           input_format='tfrecord', num_clips=_NUM_CLIPS, batch_size=3)
    self.assertEqual(count, 3)
    self.assertRegex(log, r'failed: bad_jpeg: unreadable: ')
    self.assertRegex(log, r'failed: .*val-00001-of-00002\.tfrecord#1: unreadable: .*corrupt TFRecord file after 1 '
                          r'records')
    expected = self.loaded.signatures['serve_examples'](examples=tf.constant(good))
    rows = [tf.train.Example.FromString(r.numpy()) for r in tf.data.TFRecordDataset(output)]
    self.assertEqual([r.features.feature['video_id'].bytes_list.value[0] for r in rows], [b'v0', b'v1', b'v2'])
    self.assertEqual([r.features.feature['label'].int64_list.value[0] for r in rows], [1, 2, 3])
    for i, row in enumerate(rows):
      self.assertAllClose(row.features.feature['features'].float_list.value, expected['features'][i],
                          atol=_TOLERANCE, rtol=0)

  def test_no_readable_video_and_bad_arguments(self):
    listing = os.path.join(self.get_temp_dir(), 'list.txt')
    with open(listing, 'w') as f:
      f.write('missing.mp4\n')
    output = os.path.join(self.get_temp_dir(), 'none.npz')
    count, log = self._run(input_path=listing, output=output)
    self.assertEqual(count, 0)
    self.assertRegex(log, r'failed: missing\.mp4: missing file: ')
    self.assertFalse(os.path.exists(output))
    with self.assertRaisesRegex(errors.UserInputError, r'must end with \.npz or \.tfrecord'):
      self._run(input_path=listing, output=os.path.join(self.get_temp_dir(), 'out.csv'))
    with self.assertRaisesRegex(errors.UserInputError, r'holds no SavedModel'):
      extract_features.resolve_saved_model(self.get_temp_dir())
    with self.assertRaisesRegex(errors.UserInputError, r'--num_crops must be 1 or 3, got 2'):
      self._run(input_path=listing, output=output, num_crops=2)
