r"""Exports a CVRL checkpoint as a versioned SavedModel for TF Serving (see docs/serving.md).

  python -m official_cvrl.serving.export_saved_model --experiment=cvrl_pretrain_demo \
      --config_file=demo_output/pretrain/params.yaml --checkpoint_path=demo_output/pretrain \
      --export_dir=demo_output/saved_model

writes `<export_dir>/<version>/` (version = Unix time in seconds, the layout TF Serving watches) holding the
signatures of `export_module.CVRLExportModule`, the TF Serving warm-up requests
(`assets.extra/tf_serving_warmup_requests`) and the experiment config (`assets.extra/params.yaml`). The version
folder appears in one rename once complete, so a model server watching `<export_dir>` never loads half an export.
TF Serving serves the highest version, so a new export is always numbered above every version already there (even
one from a clock ahead of this one); the hidden temporaries of killed exports are removed at the next export.

The checkpoint may come from pretraining (model_type 'cvrl': features + projection) or from linear evaluation or
fine-tuning (model_type 'cvrl_classifier': features + logits); pass the experiment (and the `params.yaml` of the
run) that trained it. Every model variable must be in the checkpoint with the same shape, otherwise the export
stops and lists the ones that are not. The clip geometry comes from the experiment's `task.validation_data`:
`feature_shape` = [frames per clip, crop, crop, 3] and `temporal_stride` (override them with --params_override,
e.g. the paper's 32-frame evaluation clips: `task.validation_data.feature_shape=[32,224,224,3]`).
"""
import os
import re
import sys
import tempfile
import time
from typing import List, Optional, Sequence, Tuple

from absl import app
from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import config_definitions as cfg
from official.core import exp_factory
from official.modeling import hyperparams
from official.vision.modeling import factory_3d

from data_tools import sequence_example
from official_cvrl import registry_imports  # pylint: disable=unused-import  (registers experiments and models)
from official_cvrl.ops import multi_view
from official_cvrl.serving import export_module
from official_cvrl.utils import checkpoints
from official_cvrl.utils import errors

FLAGS = flags.FLAGS

WARMUP_FILE = 'tf_serving_warmup_requests'
ASSETS_EXTRA = 'assets.extra'
PARAMS_FILE = 'params.yaml'

# How many variables a checkpoint mismatch message lists before summarising.
_MAX_LISTED = 20

# `.tmp-<version>-<pid>`: the folder an export writes before renaming it to `<version>`.
_TEMPORARY = re.compile(r'\.tmp-(\d+)-(\d+)')


def load_experiment_config(experiment: str,
                           config_files: Optional[Sequence[str]] = None,
                           params_override: Optional[str] = None) -> cfg.ExperimentConfig:
  """Builds the experiment config as the training driver does: registry, then YAML files, then overrides.

  Raises:
    UserInputError: on an unknown experiment, a missing file or a key the experiment does not have.
  """
  try:
    params = exp_factory.get_exp_config(experiment)
  except (LookupError, AssertionError):
    raise errors.UserInputError(f'--experiment={experiment} is not a registered experiment (README, '
                                '"Experiments").') from None
  sources = [f'--experiment={experiment}']
  try:
    for config_file in config_files or []:
      sources.append(f'--config_file={config_file}')
      if not tf.io.gfile.exists(config_file):
        raise errors.UserInputError(f'--config_file={config_file} does not exist.')
      params = hyperparams.override_params_dict(params, config_file, is_strict=True)
    if params_override:
      sources.append(f'--params_override={params_override}')
      params = hyperparams.override_params_dict(params, params_override, is_strict=True)
    params.validate()
  except (KeyError, ValueError, TypeError, AttributeError) as e:
    if isinstance(e, errors.UserInputError):
      raise
    detail = e.args[0] if e.args else repr(e)
    raise errors.UserInputError(f'invalid experiment configuration ({", ".join(sources)}): {detail}. Every key '
                                'must exist in the registered experiment.') from None
  params.lock()
  return params


def clip_geometry(params: cfg.ExperimentConfig) -> Tuple[int, int, int]:
  """(frames per clip, temporal stride, crop size) of the experiment's evaluation clips.

  Raises:
    UserInputError: when the crop is not square.
  """
  data = params.task.validation_data
  num_frames, height, width = (int(v) for v in data.feature_shape[:3])
  if height != width:
    raise errors.UserInputError(f'task.validation_data.feature_shape={list(data.feature_shape)}: the export '
                                'takes square centre crops; set equal height and width.')
  return num_frames, int(data.temporal_stride), height


def build_model(params: cfg.ExperimentConfig) -> tf_keras.Model:
  """Builds the experiment's model for clips of any length at the evaluation crop size.

  The training task fixes the clip length in the model's input; serving takes clips of any length (the encoder
  pools over time), so the model is rebuilt here with a free time axis. Its variables are the task's.

  Returns:
    The built model, in float32 whatever the training precision (serving runs on CPUs as often as on GPUs).
  """
  num_frames, _, crop_size = clip_geometry(params)
  model_config = params.task.model
  input_specs = tf_keras.layers.InputSpec(shape=[None, None, crop_size, crop_size, 3])
  num_classes = int(params.task.train_data.num_classes)
  model = factory_3d.build_model(model_config.model_type, input_specs=input_specs, model_config=model_config,
                                 num_classes=num_classes)
  model(tf.zeros([1, num_frames, crop_size, crop_size, 3]), training=False)
  return model


def resolve_checkpoint(checkpoint_path: str) -> str:
  """Returns the checkpoint prefix of a model_dir (its latest checkpoint) or of a prefix.

  Raises:
    UserInputError: when there is no checkpoint there.
  """
  if tf.io.gfile.isdir(checkpoint_path):
    prefix = tf.train.latest_checkpoint(checkpoint_path)
    if not prefix:
      raise errors.UserInputError(f'--checkpoint_path={checkpoint_path} is a folder without a checkpoint (no '
                                  '"checkpoint" file naming one). Pass the training model_dir or a ckpt-N prefix.')
    return prefix
  if not tf.io.gfile.exists(checkpoint_path + '.index'):
    raise errors.UserInputError(f'--checkpoint_path={checkpoint_path} is neither a folder nor a checkpoint prefix '
                                f'({checkpoint_path}.index does not exist).')
  return checkpoint_path


def _model_variable_shapes(prefix: str) -> dict:
  """{key: shape} of the variables under the checkpoint's 'model' object."""
  return {name: tuple(shape) for name, shape in tf.train.list_variables(prefix)
          if name.startswith('model/') and not name.startswith('model/.') and '/.OPTIMIZER_SLOT/' not in name}


def _mismatch_report(model: tf_keras.Model, prefix: str) -> str:
  """Lists the model variables the checkpoint lacks or holds with another shape."""
  with tempfile.TemporaryDirectory() as tmp:
    # The checkpoint keys the model would have: write them out and list them (the same object-graph naming).
    expected = _model_variable_shapes(tf.train.Checkpoint(model=model).write(os.path.join(tmp, 'expected')))
  found = _model_variable_shapes(prefix)
  missing = sorted(set(expected) - set(found))
  misshaped = sorted(k for k in set(expected) & set(found) if expected[k] != found[k])
  lines = []
  if missing:
    lines.append(f'{len(missing)} model variable(s) missing from the checkpoint:')
    lines += [f'  {k} {list(expected[k])}' for k in missing[:_MAX_LISTED]]
  if misshaped:
    lines.append(f'{len(misshaped)} variable(s) with another shape in the checkpoint (model vs checkpoint):')
    lines += [f'  {k} {list(expected[k])} vs {list(found[k])}' for k in misshaped[:_MAX_LISTED]]
  if len(missing) > _MAX_LISTED or len(misshaped) > _MAX_LISTED:
    lines.append(f'  (first {_MAX_LISTED} of each listed)')
  return '\n'.join(lines)


def restore_checkpoint(model: tf_keras.Model, checkpoint_path: str) -> str:
  """Restores every variable of `model` from a trainer checkpoint (`Checkpoint(model=..., ...)` layout).

  Strict: each model variable must be in the checkpoint with its shape; optimizer state and the extra root items
  are ignored.

  Args:
    model: the built model.
    checkpoint_path: a model_dir or a checkpoint prefix.

  Returns:
    The checkpoint prefix restored.

  Raises:
    UserInputError: no checkpoint, or the checkpoint does not match the model (the message lists the variables).
  """
  prefix = resolve_checkpoint(checkpoint_path)
  hint = ('Export with the experiment and params.yaml of the run that wrote the checkpoint (a pretraining '
          'checkpoint has no classifier; a classifier checkpoint has no projection head).')
  try:
    status = tf.train.Checkpoint(model=model).read(prefix)
    status.assert_existing_objects_matched()
  except (AssertionError, ValueError, tf.errors.InvalidArgumentError) as e:
    report = _mismatch_report(model, prefix) or str(e).splitlines()[0]
    raise errors.UserInputError(f'checkpoint {prefix} does not match the model of the experiment.\n{report}\n'
                                f'{hint}') from None
  status.expect_partial()
  return prefix


def _warmup_example(num_frames: int, crop_size: int) -> bytes:
  frame = sequence_example.encode_jpeg(np.full([crop_size, crop_size, 3], 128, np.uint8))
  example = sequence_example.make_sequence_example(
      [frame] * num_frames, video_id='warmup', height=crop_size, width=crop_size, fps=25.0, source_fps=25.0)
  return example.SerializeToString()


def warmup_inputs(module: export_module.CVRLExportModule) -> List[Tuple[str, dict]]:
  """One small request per signature, in the clip geometry of the export: [(signature, {input: array})]."""
  # pylint: disable=protected-access
  num_frames, stride, crop = module._num_frames, module._temporal_stride, module._crop_size
  clip_span = (num_frames - 1) * stride + 1
  clip = np.zeros([1, num_frames, crop, crop, 3], np.uint8)
  return [
      (export_module.SIGNATURE_CLIPS, {export_module.INPUT_CLIPS: clip}),
      (export_module.SIGNATURE_VIDEO_CLIPS, {export_module.INPUT_CLIPS: clip[:, np.newaxis]}),
      (export_module.SIGNATURE_EXAMPLES,
       {export_module.INPUT_EXAMPLES: np.array([_warmup_example(clip_span, crop)], dtype=object)}),
  ]


def write_warmup_requests(path: str, module: export_module.CVRLExportModule) -> int:
  """Writes TF Serving warm-up records (PredictionLog protos in a TFRecord file) to `path`.

  TF Serving replays them when it loads the version, so the graph is optimised and the kernels initialised
  before the first real request.

  Returns:
    The number of requests written.
  """
  # pylint: disable=g-import-not-at-top  (only the export needs the serving protos)
  from tensorflow_serving.apis import predict_pb2
  from tensorflow_serving.apis import prediction_log_pb2
  # pylint: enable=g-import-not-at-top
  requests = warmup_inputs(module)
  with tf.io.TFRecordWriter(path) as writer:
    for signature, inputs in requests:
      request = predict_pb2.PredictRequest()
      request.model_spec.signature_name = signature
      for name, array in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(array))
      log = prediction_log_pb2.PredictionLog(predict_log=prediction_log_pb2.PredictLog(request=request))
      writer.write(log.SerializeToString())
  return len(requests)


def check_export_dir(export_dir: str) -> None:
  """Creates the export folder, or says in one line why it cannot be one.

  Raises:
    UserInputError: `export_dir` is an existing file, or cannot be created (e.g. a file in its path).
  """
  if tf.io.gfile.exists(export_dir) and not tf.io.gfile.isdir(export_dir):
    raise errors.UserInputError(f'--export_dir={export_dir} is an existing file, not a folder. Pass a folder: '
                                'each export is written to <export_dir>/<version>/.')
  try:
    tf.io.gfile.makedirs(export_dir)
  except tf.errors.OpError as e:
    raise errors.UserInputError(f'--export_dir={export_dir} cannot be created ({e.message.splitlines()[0]}). '
                                'Pass a folder you can write to.') from None


def existing_versions(export_dir: str) -> List[int]:
  """The version numbers (all-digit folder names, as TF Serving reads them) in `export_dir`."""
  names = (name.rstrip('/') for name in tf.io.gfile.listdir(export_dir))
  return sorted(int(name) for name in names if name.isdigit())


def _process_alive(pid: int) -> bool:
  try:
    os.kill(pid, 0)  # Signal 0 only checks that the process exists.
  except ProcessLookupError:
    return False
  except OSError:
    return True  # Exists but belongs to another user.
  return True


def remove_stale_temporaries(export_dir: str) -> List[str]:
  """Deletes the `.tmp-<version>-<pid>` folders of exports whose process no longer runs.

  An export killed (SIGKILL, OOM, power loss) before its rename leaves its temporary folder behind; TF Serving
  ignores it, but it would stay forever. A temporary whose process is alive belongs to an export in progress and
  is kept. On remote file systems (`gs://`) a process id says nothing about other machines, so nothing is deleted.

  Returns:
    The folders deleted.
  """
  if '://' in export_dir:
    return []
  removed = []
  for name in tf.io.gfile.listdir(export_dir):
    match = _TEMPORARY.fullmatch(name.rstrip('/'))
    if match and int(match.group(2)) != os.getpid() and not _process_alive(int(match.group(2))):
      path = os.path.join(export_dir, name.rstrip('/'))
      tf.io.gfile.rmtree(path)
      removed.append(path)
  return removed


def _new_version(export_dir: str) -> int:
  """Unix time in seconds, or one above the highest version already there when that is higher.

  TF Serving serves the highest version: a version below an existing one (written by a machine whose clock runs
  ahead, or numbered by hand) would be exported but never served.
  """
  versions = existing_versions(export_dir)
  return max([int(time.time())] + [v + 1 for v in versions])


def save_versioned(module: export_module.CVRLExportModule, export_dir: str,
                   params: Optional[cfg.ExperimentConfig] = None) -> str:
  """Saves `module` as `<export_dir>/<version>/` with warm-up requests, atomically.

  Everything is written to a hidden temporary folder next to the versions (TF Serving only loads all-digit
  folder names), then renamed to the version folder in one step: a watcher never sees half a version, and a
  crash leaves no version folder behind. The rename is atomic on local and POSIX file systems; object stores
  (gs://) have no atomic folder rename, so export locally and copy the finished folder there. The version is
  chosen at the rename, above every version present then (see `_new_version`); temporaries of killed exports
  are deleted first.

  Args:
    module: the export module.
    export_dir: base folder of the versions.
    params: experiment config, saved as assets.extra/params.yaml for provenance.

  Returns:
    The version folder written.
  """
  check_export_dir(export_dir)
  for path in remove_stale_temporaries(export_dir):
    logging.warning('Removed %s, left by an export that was killed.', path)
  signatures = module.get_inference_signatures()
  version = _new_version(export_dir)
  temporary = os.path.join(export_dir, f'.tmp-{version}-{os.getpid()}')
  try:
    tf.saved_model.save(module, temporary, signatures=signatures)
    extra = os.path.join(temporary, ASSETS_EXTRA)
    tf.io.gfile.makedirs(extra)
    write_warmup_requests(os.path.join(extra, WARMUP_FILE), module)
    if params is not None:
      hyperparams.save_params_dict_to_yaml(params, os.path.join(extra, PARAMS_FILE))
    while True:
      # Chosen again now: another export may have written a version meanwhile, and ours must be above it.
      version = _new_version(export_dir)
      if version > int(time.time()) + 1:
        logging.warning('%s holds versions up to %d, above the current Unix time: writing version %d so that TF '
                        'Serving serves this export.', export_dir, version - 1, version)
      final = os.path.join(export_dir, str(version))
      try:
        tf.io.gfile.rename(temporary, final, overwrite=False)
        return final
      except tf.errors.AlreadyExistsError:
        continue  # Another export took this version between the listing and the rename.
  finally:
    if tf.io.gfile.exists(temporary):
      tf.io.gfile.rmtree(temporary)


def run_export(experiment: str, checkpoint_path: str, export_dir: str,
               config_files: Optional[Sequence[str]] = None, params_override: Optional[str] = None,
               num_clips: int = 1, num_crops: int = 1) -> str:
  """Builds the experiment's model, restores the checkpoint and writes a new SavedModel version.

  Returns:
    The version folder written.

  Raises:
    UserInputError: on a bad config, a missing or mismatched checkpoint, num_clips < 1, num_crops not 1 or 3, or
      an --export_dir that is a file.
  """
  if num_clips < 1:
    raise errors.UserInputError(f'--num_clips must be >= 1, got {num_clips}.')
  if num_crops not in multi_view.TEST_CROP_COUNTS:
    raise errors.UserInputError(f'--num_crops must be 1 or 3, got {num_crops}.')
  check_export_dir(export_dir)  # Before the slow part: a bad --export_dir fails at once.
  params = load_experiment_config(experiment, config_files, params_override)
  num_frames, stride, crop_size = clip_geometry(params)
  model = build_model(params)
  if checkpoints.is_backbone_only(checkpoint_path, '--checkpoint_path'):
    # A released backbone (docs/evaluation.md): only the backbone's outputs are defined, so only they are served.
    prefix = checkpoints.restore_backbone(model.backbone, checkpoint_path, key='--checkpoint_path')
    model = export_module.backbone_features_model(model)
  else:
    prefix = restore_checkpoint(model, checkpoint_path)
  logging.info('Restored %s.', prefix)
  data = params.task.validation_data
  module = export_module.CVRLExportModule(
      params, model, num_frames=num_frames, temporal_stride=stride, crop_size=crop_size, num_clips=num_clips,
      image_key=data.image_field_key, label_key=data.label_field_key, num_crops=num_crops)
  return save_versioned(module, export_dir, params)


def define_flags() -> None:
  """Defines the command-line flags (called only when run as a script, so importing this module is safe)."""
  flags.DEFINE_string('experiment', None, 'Registered experiment the checkpoint was trained with.')
  flags.DEFINE_multi_string(
      'config_file', None, 'YAML files overriding the experiment, in order (e.g. the run\'s <model_dir>/params.yaml).')
  flags.DEFINE_string(
      'params_override', None, 'Final overrides, as in training: "a.b=1,c.d=x" or a YAML/JSON string.')
  flags.DEFINE_string(
      'checkpoint_path', None, 'A model_dir (its latest checkpoint is used), a checkpoint prefix (ckpt-1000), or a '
      'backbone-only checkpoint such as a released <name>/<name>_backbone-1 (then only features are served).')
  flags.DEFINE_string(
      'export_dir', None, 'Base folder of the versioned exports; the new version goes to <export_dir>/<version>.')
  flags.DEFINE_integer(
      'num_clips', 1, 'Evenly spaced clips per video that the serve_examples signature samples and averages.')
  flags.DEFINE_integer(
      'num_crops', 1, 'Spatial views per clip in serve_examples: 1 (centre square) or 3 (both ends and centre of '
      'the long side, the paper\'s 3-crop testing).')
  flags.mark_flags_as_required(['experiment', 'checkpoint_path', 'export_dir'])


def main(_):
  try:
    path = run_export(FLAGS.experiment, FLAGS.checkpoint_path, FLAGS.export_dir, FLAGS.config_file,
                      FLAGS.params_override, FLAGS.num_clips, FLAGS.num_crops)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
  print(f'Wrote SavedModel {path} (signatures: {", ".join(export_module.DEFAULT_FUNCTION_KEYS.values())}).',
        flush=True)


if __name__ == '__main__':
  define_flags()
  app.run(main)
