"""Training driver: Model Garden's vision driver with CVRL registered and bad input reported plainly.

Usage (all Model Garden flags apply: --experiment, --config_file, --params_override, --mode, --model_dir, --tpu,
--gin_file, --gin_params):

  python -m official_cvrl.train --experiment=cvrl_pretrain_kinetics400 --mode=train_and_eval \
      --model_dir=gs://bucket/cvrl_k400 --config_file=experiments/cvrl_pretrain_kinetics400_r3d50_800ep_tpu.yaml

What this adds around `official.vision.train.main` (preemption recovery and checkpoint resumption come from it
unchanged):
- the configuration is parsed and validated first (`check_configuration`): a wrong key, a wrongly typed value, a
  YAML file with Python tags or a failed task check is one `error:` line naming the key, exit code 2;
- `--params_override` values may contain `{split}` / `{label_percent}` placeholders unquoted, and several
  `--params_override` flags are merged in order (absl alone keeps only the last);
- the metrics of each logging step are printed on the `train | step ...` line itself;
- `--cpu_devices=N` gives `runtime.distribution_strategy=mirrored` N CPU replicas, `runtime.num_gpus` above the
  visible GPUs is an error line instead of a hang, and non-chief workers of a multi-worker run remove their
  checkpoint copies, resume from the chief's checkpoint and write no summaries (see `utils.distribution`);
- the `failed call to cuInit` error of machines without a GPU is not shown (see `utils.quiet_logs`).

The flags are defined when this module is imported, so a project of its own can register more tasks and
experiments and run this driver (README, "Extending a task"):

  from absl import app
  import official_cvrl.train  # First: it quiets TensorFlow's start-up log before TensorFlow loads.
  import official_cvrl.registry_imports  # pylint: disable=unused-import
  import my_project.my_pretrain  # pylint: disable=unused-import

  if __name__ == '__main__':
    app.run(official_cvrl.train.main)
"""
import os
import sys

# C++ INFO lines (oneDNN, CPU instruction sets, CUDA stubs) are not actionable; warnings and errors stay visible.
# Read by TensorFlow at its first log, so set before it is imported; an explicit user setting wins.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')

# pylint: disable=g-import-not-at-top,wrong-import-position
from typing import Optional, Sequence

from absl import app
from absl import flags
from orbit import controller as orbit_controller
import tensorflow as tf
import tf_keras

from official.common import flags as tfm_flags
from official.core import config_definitions as cfg
from official.vision import train as vision_train

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import overrides
from official_cvrl.utils import distribution
from official_cvrl.utils import errors
from official_cvrl.utils import input_files
from official_cvrl.utils import metrics_format
from official_cvrl.utils import quiet_logs
# pylint: enable=g-import-not-at-top,wrong-import-position

FLAGS = flags.FLAGS

_REQUIRED_FLAGS = ('experiment', 'mode', 'model_dir')


def define_flags() -> None:
  """Defines Model Garden's driver flags and `--seed`, once, whoever imports this module first."""
  if 'experiment' not in FLAGS:
    tfm_flags.define_flags()
  if 'seed' not in FLAGS:
    flags.DEFINE_integer(
        'seed', None, 'Global random seed (model initialisation, augmentation and shuffling); unset = random. '
        'Used to repeat a run, or to measure the spread over seeds.')
  if 'cpu_devices' not in FLAGS:
    flags.DEFINE_integer(
        'cpu_devices', 1, 'Split the CPU into this many logical devices; with runtime.distribution_strategy='
        'mirrored and runtime.num_gpus=0 each is a data-parallel replica (cross-replica negatives, synchronized '
        'batch norm), to try multi-replica training without accelerators. See README, "Scaling out".')


define_flags()
# Before `app.run`: TensorFlow modules register start-up callbacks that query the devices before `main` runs.
quiet_logs.initialize_devices()


def _fail(message: str, exit_code: int = 2):
  # Printed, not logged: absl's log handler writes to the same stderr, and the user should read it once.
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(exit_code)


def _message(error: Exception) -> str:
  """The user-facing message of `error`, without the `In call to configurable ...` lines gin appends."""
  return str(error).split('\n  In call to configurable', 1)[0]


def _params_override_values(flags_obj, argv: Sequence[str]) -> Sequence[str]:
  """Every --params_override of the command line, in order; the flag's own value if it came from elsewhere."""
  values = overrides.params_override_values(argv)
  if flags_obj.params_override and (not values or values[-1] != flags_obj.params_override):
    return [flags_obj.params_override]  # Set by a --flagfile or by code, not on this command line.
  return values


def parse_experiment(flags_obj, argv: Sequence[str]) -> cfg.ExperimentConfig:
  """`overrides.build_experiment` from the flags; raises `UserInputError` naming the flag or key at fault.

  As a side effect, `flags_obj.params_override` is replaced by the merged, quoted overrides, so that Model
  Garden's driver (which parses the flags again) reads exactly what was validated here.
  """
  values = _params_override_values(flags_obj, argv)
  params, merged = overrides.build_experiment(flags_obj.experiment, flags_obj.config_file or [], values)
  if values:
    flags_obj.params_override = overrides.to_override_string(merged)
  return params


def check_configuration(flags_obj, argv: Optional[Sequence[str]] = None) -> cfg.ExperimentConfig:
  """`parse_experiment`, exiting with one `error:` line (exit code 2) on a configuration mistake."""
  try:
    return parse_experiment(flags_obj, sys.argv if argv is None else argv)
  except errors.UserInputError as e:
    _fail(str(e))


def main(argv):
  missing = [f'--{name}' for name in _REQUIRED_FLAGS if not getattr(FLAGS, name)]
  if missing:
    _fail(f'{", ".join(missing)} must be given (e.g. --experiment=cvrl_pretrain_demo --mode=train_and_eval '
          '--model_dir=demo_output/pretrain); see README, "Pretraining".')
  params = check_configuration(FLAGS)
  try:
    # Before anything is built: Model Garden would mirror over GPUs that do not exist and hang.
    distribution.check_devices(params.runtime.distribution_strategy, params.runtime.num_gpus, FLAGS.cpu_devices)
    if FLAGS.cpu_devices > 1:
      distribution.split_cpu(FLAGS.cpu_devices)
  except errors.UserInputError as e:
    _fail(str(e))
  if FLAGS.seed is not None:
    tf_keras.utils.set_random_seed(FLAGS.seed)
  # Orbit prints each step's metrics as a multi-line dict after `output:`; keep them on the step's line.
  orbit_controller._format_output = metrics_format.format_metrics  # pylint: disable=protected-access
  try:
    with distribution.model_garden_patched(FLAGS.cpu_devices):
      vision_train.main(argv)
  except errors.UserInputError as e:
    _fail(_message(e))
  except tf.errors.DataLossError as e:  # A record damaged past the pre-run header check; the error names no file.
    _fail(input_files.read_error_message(input_files.input_paths(params), e))
  except tf.errors.OpError as e:
    if errors.NON_FINITE_LOSS_MARKER in (e.message or ''):
      _fail(f'the training loss became NaN or Inf; training stopped before saving it. The last good checkpoint '
            f'in {FLAGS.model_dir} is intact: lower the learning rate, check the input data '
            '(`python -m data_tools.verify`), or train in float32 (runtime.mixed_precision_dtype=float32), then '
            'rerun the same command to resume.', exit_code=3)
    raise


if __name__ == '__main__':
  app.run(main)
