r"""Runs a UCF-101 / HMDB-51 protocol on its three official splits and reports each split and their mean.

  python -m official_cvrl.evaluate_splits --experiment=cvrl_finetune_ucf101 \
      --config_file=experiments/cvrl_finetune_ucf101_r3d50_50ep_tpu.yaml --model_dir_root=gs://bucket/ucf101_ft

For every split N (default 1, 2, 3) this runs, in a subprocess, exactly what a user would type:

  python -m official_cvrl.train --experiment=... --mode=train_and_eval --model_dir=<model_dir_root>/splitN \
      --config_file=... --config_file=<override setting task.dataset_split=N> [--params_override=...]

then reads the final `accuracy` and `top_5_accuracy` from `<model_dir_root>/splitN/validation` (the TensorBoard
scalars Model Garden writes) and prints a table plus the mean over splits, the number the paper reports as "3
splits average" (Table 4, marked with a double dagger). Splits whose run already reached `trainer.train_steps` are
not run again, so an interrupted job resumes, and `--skip_training` only collects results. The table is also
written to `<model_dir_root>/splits_results.json`.
"""
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Dict, List, Optional, Sequence

from absl import app
from absl import flags
import tensorflow as tf

from official.core import exp_factory
from official.modeling import hyperparams

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import video_classification as vc_cfg

_METRICS = ('accuracy', 'top_5_accuracy')
RESULTS_FILE = 'splits_results.json'


@dataclasses.dataclass
class SplitResult:
  """The final evaluation of one split's run.

  Attributes:
    split: the official split number.
    model_dir: where the run wrote its checkpoints and summaries.
    step: training step of the last evaluation, or None if the run never evaluated.
    metrics: metric name -> value at that step.
  """
  split: int
  model_dir: str
  step: Optional[int] = None
  metrics: Dict[str, float] = dataclasses.field(default_factory=dict)


def read_validation_scalars(model_dir: str, subdir: str = 'validation') -> Dict[int, Dict[str, float]]:
  """Every scalar of `<model_dir>/<subdir>` event files: {step: {tag: value}}, later events overriding earlier."""
  scalars: Dict[int, Dict[str, float]] = {}
  for path in sorted(tf.io.gfile.glob(os.path.join(model_dir, subdir, 'events.out.tfevents.*'))):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        number = float(tf.make_ndarray(value.tensor)) if value.HasField('tensor') else float(value.simple_value)
        scalars.setdefault(int(event.step), {})[value.tag] = number
  return scalars


def final_result(split: int, model_dir: str) -> SplitResult:
  """The metrics of the latest evaluation that logged every metric of `_METRICS`."""
  scalars = read_validation_scalars(model_dir)
  complete = [step for step, values in scalars.items() if all(m in values for m in _METRICS)]
  if not complete:
    return SplitResult(split, model_dir)
  step = max(complete)
  return SplitResult(split, model_dir, step, {m: scalars[step][m] for m in _METRICS})


def build_params(experiment: str, config_files: Sequence[str], params_override: str) -> hyperparams.Config:
  """The experiment config as `official_cvrl.train` would build it (before the per-split override)."""
  params = exp_factory.get_exp_config(experiment)
  for config_file in config_files:
    params = hyperparams.override_params_dict(params, config_file, is_strict=True)
  if params_override:
    params = hyperparams.override_params_dict(params, params_override, is_strict=True)
  return params


def train_command(experiment: str, model_dir: str, config_files: Sequence[str], split_override_file: str,
                  params_override: str, seed: Optional[int]) -> List[str]:
  """The `official_cvrl.train` command line of one split."""
  command = [sys.executable, '-m', 'official_cvrl.train', f'--experiment={experiment}', '--mode=train_and_eval',
             f'--model_dir={model_dir}']
  command += [f'--config_file={f}' for f in config_files]
  command.append(f'--config_file={split_override_file}')
  if params_override:
    command.append(f'--params_override={params_override}')
  if seed is not None:
    command.append(f'--seed={seed}')
  return command


def _run_subprocess(command: Sequence[str]) -> int:
  print('$ ' + ' '.join(command), flush=True)
  return subprocess.call(list(command))


def evaluate_splits(experiment: str,
                    model_dir_root: str,
                    config_files: Sequence[str] = (),
                    params_override: str = '',
                    splits: Sequence[int] = vc_cfg.OFFICIAL_SPLITS,
                    train: bool = True,
                    seed: Optional[int] = None,
                    run_fn: Callable[[Sequence[str]], int] = _run_subprocess) -> List[SplitResult]:
  """Trains (unless done or `train` is False) and collects the final evaluation of every split.

  Args:
    experiment: a registered experiment whose input paths contain `{split}` (e.g. cvrl_finetune_ucf101).
    model_dir_root: parent of the per-split model_dirs `split1`, `split2`, `split3`.
    config_files: YAML files applied in order, as `--config_file` of `official_cvrl.train`.
    params_override: as `--params_override`; must not set task.dataset_split.
    splits: which official splits.
    train: run the splits that have not reached trainer.train_steps.
    seed: passed as `--seed`.
    run_fn: runs a command line, returns its exit code (a subprocess by default).

  Returns:
    One `SplitResult` per split.

  Raises:
    ValueError: on a bad experiment / split / override, or when a training run fails.
  """
  if 'dataset_split' in (params_override or ''):
    raise ValueError('--params_override must not set task.dataset_split: this tool sets it for every split.')
  params = build_params(experiment, config_files, params_override)
  if not isinstance(params.task, vc_cfg.ClassificationTask):
    raise ValueError(f'{experiment} is not an evaluation experiment (its task is {type(params.task).__name__}).')
  for split in splits:
    if split not in vc_cfg.OFFICIAL_SPLITS:
      raise ValueError(f'--splits: {split} is not an official split {vc_cfg.OFFICIAL_SPLITS}.')
    params.task.dataset_split = split
    params.validate()  # Fails here, not in a subprocess, when the paths lack {split}.
  train_steps = params.trainer.train_steps
  results = []
  with tempfile.TemporaryDirectory() as tmp:
    for split in splits:
      model_dir = os.path.join(model_dir_root, f'split{split}')
      result = final_result(split, model_dir)
      if train and (result.step is None or result.step < train_steps):
        override_file = os.path.join(tmp, f'split{split}.yaml')
        with open(override_file, 'w') as f:
          f.write(f'task:\n  dataset_split: {split}\n')
        code = run_fn(train_command(experiment, model_dir, config_files, override_file, params_override, seed))
        if code != 0:
          raise ValueError(f'training split {split} failed (exit code {code}); see its log above. Rerun the same '
                           'command to resume it.')
        result = final_result(split, model_dir)
      results.append(result)
  return results


def format_table(results: Sequence[SplitResult], train_steps: Optional[int] = None) -> str:
  """A text table of top-1 / top-5 (%) per split and their mean over the splits that finished."""
  lines = [f'{"split":>6} {"step":>8} {"top-1 %":>8} {"top-5 %":>8}']
  finished = []
  for r in results:
    if r.step is None:
      lines.append(f'{r.split:>6} {"-":>8} {"(no evaluation yet)":>18}')
      continue
    note = '' if train_steps is None or r.step >= train_steps else f'  (unfinished: step {r.step} of {train_steps})'
    lines.append(f'{r.split:>6} {r.step:>8} {100 * r.metrics["accuracy"]:>8.2f} '
                 f'{100 * r.metrics["top_5_accuracy"]:>8.2f}{note}')
    finished.append(r)
  if finished:
    mean = {m: sum(r.metrics[m] for r in finished) / len(finished) for m in _METRICS}
    label = 'mean' if len(finished) == len(results) else f'mean of {len(finished)}'
    lines.append(f'{label:>6} {"":>8} {100 * mean["accuracy"]:>8.2f} {100 * mean["top_5_accuracy"]:>8.2f}')
  return '\n'.join(lines)


def write_results(results: Sequence[SplitResult], model_dir_root: str) -> str:
  path = os.path.join(model_dir_root, RESULTS_FILE)
  finished = [r for r in results if r.step is not None]
  payload = {
      'splits': [dataclasses.asdict(r) for r in results],
      'mean': ({m: sum(r.metrics[m] for r in finished) / len(finished) for m in _METRICS} if finished else None),
      'num_splits_finished': len(finished),
  }
  tf.io.gfile.makedirs(model_dir_root)
  with tf.io.gfile.GFile(path, 'w') as f:
    f.write(json.dumps(payload, indent=2) + '\n')
  return path


FLAGS = flags.FLAGS


def define_flags():
  """Defines the command-line flags (not at import, so importing this module next to train.py is safe)."""
  flags.DEFINE_string('experiment', None, 'A UCF-101 / HMDB-51 experiment, e.g. cvrl_finetune_ucf101.')
  flags.DEFINE_multi_string('config_file', [], 'YAML files applied in order (as for official_cvrl.train).')
  flags.DEFINE_string('params_override', '', 'Overrides applied last (as for official_cvrl.train); not '
                      'task.dataset_split.')
  flags.DEFINE_string('model_dir_root', None, 'Each split trains in <model_dir_root>/split<N>.')
  flags.DEFINE_list('splits', ['1', '2', '3'], 'Official splits to run.')
  flags.DEFINE_bool('skip_training', False, 'Only collect the results of finished (or running) splits.')
  flags.DEFINE_integer('seed', None, 'Passed to official_cvrl.train --seed.')
  flags.mark_flags_as_required(['experiment', 'model_dir_root'])


def main(argv):
  del argv
  try:
    splits = [int(s) for s in FLAGS.splits]
    results = evaluate_splits(FLAGS.experiment, FLAGS.model_dir_root, FLAGS.config_file, FLAGS.params_override,
                              splits, train=not FLAGS.skip_training, seed=FLAGS.seed)
    train_steps = build_params(FLAGS.experiment, FLAGS.config_file, FLAGS.params_override).trainer.train_steps
  except (ValueError, KeyError) as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  print(f'\n{FLAGS.experiment}, {len(results)} split(s):')
  print(format_table(results, train_steps))
  print(f'\nwritten to {write_results(results, FLAGS.model_dir_root)}')
  if any(r.step is None or r.step < train_steps for r in results):
    sys.exit(1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
