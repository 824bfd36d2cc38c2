"""Training driver: Model Garden's vision driver with CVRL registered and bad input reported plainly.

Usage (all Model Garden flags apply: --experiment, --config_file, --params_override, --mode, --model_dir, --tpu,
--gin_file, --gin_params):

  python -m official_cvrl.train --experiment=cvrl_pretrain_kinetics400 --mode=train_and_eval \
      --model_dir=gs://bucket/cvrl_k400 --config_file=experiments/cvrl_pretrain_kinetics400_r3d50_800ep_tpu.yaml

Preemption recovery and checkpoint resumption come from `official.vision.train` unchanged.
"""
import sys

from absl import app
from absl import flags
from absl import logging
import tensorflow as tf
import tf_keras

from official.common import flags as tfm_flags
from official.core import train_utils
from official.vision import train as vision_train

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.utils import errors
from official_cvrl.utils import input_files

FLAGS = flags.FLAGS

flags.DEFINE_integer(
    'seed', None, 'Global random seed (model initialisation, augmentation and shuffling); unset = random. '
    'Used to repeat a run, or to measure the spread over seeds.')


def _fail(message: str, exit_code: int = 2):
  logging.error(message)
  print(f'error: {message}', file=sys.stderr, flush=True)
  sys.exit(exit_code)


def check_configuration(flags_obj) -> None:
  """Parses and validates the experiment config, turning config mistakes into one-line errors."""
  try:
    train_utils.parse_configuration(flags_obj, print_return=False)
  except (KeyError, ValueError, TypeError, AttributeError) as e:
    sources = [f'--experiment={flags_obj.experiment}']
    sources += [f'--config_file={f}' for f in (flags_obj.config_file or [])]
    if flags_obj.params_override:
      sources.append(f'--params_override={flags_obj.params_override}')
    detail = e.args[0] if e.args else repr(e)
    _fail(f'invalid experiment configuration ({", ".join(sources)}): {detail}. Every key must exist in the '
          'registered experiment (README, "Experiments"); check spelling and nesting.')


def main(argv):
  check_configuration(FLAGS)
  if FLAGS.seed is not None:
    tf_keras.utils.set_random_seed(FLAGS.seed)
  try:
    vision_train.main(argv)
  except errors.UserInputError as e:
    _fail(str(e))
  except tf.errors.DataLossError as e:  # A record damaged past the pre-run header check; the error names no file.
    params = train_utils.parse_configuration(FLAGS, print_return=False)
    _fail(input_files.read_error_message(input_files.input_paths(params), e))
  except tf.errors.OpError as e:
    if errors.NON_FINITE_LOSS_MARKER in (e.message or ''):
      _fail(f'the training loss became NaN or Inf; training stopped before saving it. The last good checkpoint '
            f'in {FLAGS.model_dir} is intact: lower the learning rate, check the input data '
            '(`python -m data_tools.verify`), or train in float32 (runtime.mixed_precision_dtype=float32), then '
            'rerun the same command to resume.', exit_code=3)
    raise


if __name__ == '__main__':
  tfm_flags.define_flags()
  flags.mark_flags_as_required(['experiment', 'mode', 'model_dir'])
  app.run(main)
