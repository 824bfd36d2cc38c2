"""The paper's ablations (Tables 6-9, Fig. 3) at demo scale: pretrain every variant, probe it, compare.

    python -m official_cvrl.ablations --study=augmentation --seeds=0,1,2 --output_dir=ablations_output

Studies (`--study`), each the paper's own variants with everything else held at the demo's settings:
  augmentation           Table 9: temporal only; spatial only; temporal + spatial drawn per frame; + consistency
  interval_distribution  Fig. 3: P(t) ~ -t+c, -t^0.5+c, -t^2+c, uniform, t+c, t^2+c
  projection_head        Table 6: 0, 1, 2, 3 hidden layers (the probe always reads the backbone)
  batch_size             Table 7: 1/4, 1/2, 1 and 2 times the demo batch, same epochs, learning rate scaled
  epochs                 Table 8: 100, 200, 500, 800 "epochs" = 125, 250, 625, 1000 steps (the demo runs 625)
  num_clips              beyond the paper: rho = 2, 3, 4 clips per video (`task.train_data.num_clips`), as
                         Feichtenhofer et al. (CVPR 2021) vary it; same steps and videos per batch, so rho = 4
                         costs twice the encoder work of rho = 2

Per variant and seed: `official_cvrl.train --experiment=cvrl_pretrain_demo` on the demo's training videos
(labels unused), then the demo's linear probe (`cvrl_linear_eval_demo`, unchanged) on the frozen backbone,
scored on the test videos. Both are subprocesses run by the demo's own `run_stage`; the data are the demo's
(rendered and converted by its stages 1-2 into `<output_dir>` unless `--records_dir` names existing records).

The schedule. The paper ablates at 200 epochs, a quarter of its 800-epoch default; the studies likewise pretrain
for a quarter of 800 "epochs" = 1000 steps (`--base_steps`, default 250; the demo runs 625), with the demo's
cosine decay and 5% warm-up compressed to that length, so one study of 4 variants x 3 seeds takes about half an
hour on 2 cores.
Batch size (Table 7) keeps the epochs fixed: steps scale as 1/batch, the learning rate linearly with the batch
(Goyal et al.'s rule, which the paper's 0.32 at batch 1024 follows; Adam here, as in the demo). Epochs (Table 8)
keep the 5% warm-up of the reference length, as the paper keeps 5 warm-up epochs at every length.

Runs are cached by their exact overrides and seed under `<output_dir>/runs/`: an interrupted study resumes where
it stopped, and a run that two studies share (each study's reference variant is the demo's configuration at the
study length) is trained once. A random-initialisation probe per seed gives the floor every variant must beat.

Outputs: `<output_dir>/<study>.json` (per-seed top-1, mean, sample standard deviation, the exact commands, wall
times and the machine load) and `<output_dir>/<study>.png` (our mean +- std per variant, the paper's top-1 beside
them on a second axis).
"""
import dataclasses
import hashlib
import json
import math
import os
import sys
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

from official_cvrl import demo

STUDIES_HELP = 'augmentation, interval_distribution, projection_head, batch_size, epochs or num_clips'
flags.DEFINE_enum('study', None, ['augmentation', 'interval_distribution', 'projection_head', 'batch_size',
                                  'epochs', 'num_clips'], 'The ablation to run.')
flags.DEFINE_list('seeds', ['0', '1', '2'], 'Seeds; each variant is pretrained and probed once per seed.')
flags.DEFINE_list('variants', None, 'Run only these variants of the study (names as in the JSON); default all.')
flags.DEFINE_integer('base_steps', 250, 'Pretraining steps of the reference variant (the paper\'s 200 epochs).')
flags.DEFINE_string('records_dir', None, 'Existing demo TFRecords (train/val/test shards); default: render and '
                    'convert the demo data into --output_dir with the demo\'s own stages.')
flags.DEFINE_list('pretrain_overrides', [], 'Extra params_override entries for every pretraining run (tests).')
flags.DEFINE_list('probe_overrides', [], 'Extra params_override entries for every probe run (tests).')
flags.DEFINE_bool('random_baseline', True, 'Also probe a randomly initialised backbone per seed (the floor).')
# --output_dir, --num_train/--num_val/--num_test and --workers are the demo's flags (this module imports it).

FLAGS = flags.FLAGS

DEFAULT_OUTPUT_DIR = 'ablations_output'
PRETRAIN_EXPERIMENT = 'cvrl_pretrain_demo'
PROBE_EXPERIMENT = 'cvrl_linear_eval_demo'
_DATA_KEYS = ('task.train_data', 'task.validation_data')


@dataclasses.dataclass(frozen=True)
class Variant:
  """One row of a paper table, as changes to the demo's pretraining experiment.

  Attributes:
    name: label in the JSON, the plot and the docs.
    paper_top1: the paper's K400 linear-evaluation top-1 (%) for this row; None where the source quotes none.
    data: DataConfig fields (dotted, below `task.train_data`) set for both training and the held-out contrastive
      evaluation, so each variant's contrastive accuracy is measured on its own pretext task.
    model: fields below `task.model`.
    batch_scale: multiplies the training batch; the steps divide by it (same epochs), the learning rate and the
      warm-up follow.
    epoch_scale: multiplies the pretraining length; the warm-up keeps its length.
  """
  name: str
  paper_top1: Optional[float]
  data: Tuple[Tuple[str, Any], ...] = ()
  model: Tuple[Tuple[str, Any], ...] = ()
  batch_scale: float = 1.0
  epoch_scale: float = 1.0


@dataclasses.dataclass(frozen=True)
class Study:
  """One ablation: its source, the claim it tests and its variants.

  `order` names the variants best first as the source ranks them, where not every variant has a number (the
  margins then follow it); by default the ranking is by `paper_top1`.
  """
  paper: str
  claim: str
  variants: Tuple[Variant, ...]
  order: Tuple[str, ...] = ()
  setting: str = 'K400 linear, R3D-50'


def _interval(distribution: str, power: float) -> Tuple[Tuple[str, Any], ...]:
  return (('temporal_augmentation.interval_distribution', distribution),
          ('temporal_augmentation.interval_power', power))


STUDIES: Dict[str, Study] = {
    'augmentation': Study('Table 9', 'TA+SA+TC > TA+SA > SA > TA', (
        Variant('TA only', 33.0, data=(('spatial_augmentation.enabled', False),)),
        Variant('SA only', 40.9, data=(('temporal_augmentation.enabled', False),)),
        Variant('TA+SA (per frame)', 52.3, data=(('spatial_augmentation.temporally_consistent', False),)),
        Variant('TA+SA+TC', 63.8),
    )),
    'interval_distribution': Study('Fig. 3', 'decreasing >= uniform >= increasing', (
        # The demo's default is the paper's choice, 'decreasing' with power 1: its row sets nothing.
        Variant('-t+c', 63.8),
        Variant('-t^0.5+c', 63.1, data=_interval('decreasing', 0.5)),
        Variant('-t^2+c', 62.9, data=_interval('decreasing', 2.0)),
        Variant('uniform', 62.7, data=(('temporal_augmentation.interval_distribution', 'uniform'),)),
        Variant('t+c', 62.4, data=(('temporal_augmentation.interval_distribution', 'increasing'),)),
        Variant('t^2+c', 61.9, data=_interval('increasing', 2.0)),
    )),
    'projection_head': Study('Table 6', '0 hidden layers clearly worst; 3 best', tuple(
        Variant(f'{n} hidden', top1, model=(('projection_head.num_hidden_layers', n),))
        for n, top1 in ((0, 54.7), (1, 62.5), (2, 63.0), (3, 63.8)))),
    'batch_size': Study('Table 7', '1024 (demo: 64) best; 2048 (128) worse', tuple(
        Variant(f'x{scale:g} (paper {paper_batch})', top1, batch_scale=scale)
        for scale, paper_batch, top1 in ((0.25, 256, 60.2), (0.5, 512, 62.9), (1.0, 1024, 63.8),
                                         (2.0, 2048, 61.8)))),
    'epochs': Study('Table 8', 'longer pretraining is better, with diminishing returns', tuple(
        Variant(f'{epochs} ep', top1, epoch_scale=epochs / 200)
        for epochs, top1 in ((100, 58.8), (200, 63.8), (500, 65.6), (800, 66.1)))),
    # Feichtenhofer et al. 2021 (MoCo, Slow-R50, K400 linear): 66.6 at rho = 2, 71.0 at rho = 4; the row for
    # rho = 3 is not quoted here. The reference (rho = 2) is the demo's configuration, shared with every study.
    'num_clips': Study('Feichtenhofer et al. 2021', 'more clips per video is better: rho=4 > rho=3 > rho=2', (
        Variant('rho=2', 66.6),
        Variant('rho=3', None, data=(('num_clips', 3),)),
        Variant('rho=4', 71.0, data=(('num_clips', 4),)),
    ), order=('rho=4', 'rho=3', 'rho=2'), setting='K400 linear, MoCo Slow-R50'),
}


def _print(message: str) -> None:
  print(message, flush=True)


def _format(value: Any) -> str:
  """A value as Model Garden's `--params_override` CSV syntax reads it back."""
  if isinstance(value, bool):
    return 'true' if value else 'false'
  if isinstance(value, float):
    return repr(value)
  return str(value)


def demo_defaults() -> Dict[str, float]:
  """The demo pretraining schedule this module scales: batch, learning rate, steps and warm-up."""
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top  (TensorFlow is slow to import)
  from official_cvrl import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  config = exp_factory.get_exp_config(PRETRAIN_EXPERIMENT)
  optimizer = config.trainer.optimizer_config
  return {'batch_size': config.task.train_data.global_batch_size,
          'learning_rate': optimizer.learning_rate.cosine.initial_learning_rate,
          'train_steps': config.trainer.train_steps,
          'warmup_fraction': optimizer.warmup.linear.warmup_steps / config.trainer.train_steps}


def schedule(variant: Variant, base_steps: int, defaults: Dict[str, float]) -> Dict[str, Any]:
  """The variant's batch, steps, warm-up and learning rate, from the reference length `base_steps`."""
  base_warmup = round(defaults['warmup_fraction'] * base_steps)
  steps = max(1, round(base_steps * variant.epoch_scale / variant.batch_scale))
  warmup = min(steps - 1, round(base_warmup / variant.batch_scale)) if base_warmup else 0
  return {'batch_size': round(defaults['batch_size'] * variant.batch_scale),
          'learning_rate': defaults['learning_rate'] * variant.batch_scale,
          'train_steps': steps,
          'warmup_steps': warmup}


def pretrain_overrides(variant: Variant, base_steps: int, defaults: Dict[str, float], records_dir: str,
                       extra: Sequence[str] = ()) -> List[str]:
  """Every `--params_override` entry of the variant's pretraining run; `extra` (tests) comes last and wins."""
  plan = schedule(variant, base_steps, defaults)
  entries = [f'task.train_data.input_path={demo._records(records_dir, "train")}',  # pylint: disable=protected-access
             f'task.validation_data.input_path={demo._records(records_dir, "val")}',  # pylint: disable=protected-access
             f'trainer.train_steps={plan["train_steps"]}',
             f'trainer.optimizer_config.warmup.linear.warmup_steps={plan["warmup_steps"]}',
             f'trainer.optimizer_config.learning_rate.cosine.offset={plan["warmup_steps"]}',
             f'trainer.optimizer_config.learning_rate.cosine.decay_steps={plan["train_steps"] - plan["warmup_steps"]}']
  if variant.batch_scale != 1.0:
    # Only training changes: the held-out contrastive accuracy keeps the same number of negatives.
    entries += [f'task.train_data.global_batch_size={plan["batch_size"]}',
                'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate='
                f'{_format(plan["learning_rate"])}']
  for key in _DATA_KEYS:
    entries += [f'{key}.{field}={_format(value)}' for field, value in variant.data]
  entries += [f'task.model.{field}={_format(value)}' for field, value in variant.model]
  return entries + list(extra)


def probe_overrides(records_dir: str, init_checkpoint: str, extra: Sequence[str] = ()) -> List[str]:
  """The demo's linear evaluation, exactly as its stage 4 runs it (train split -> test split)."""
  return [f'task.train_data.input_path={demo._records(records_dir, "train")}',  # pylint: disable=protected-access
          f'task.validation_data.input_path={demo._records(records_dir, "test")}',  # pylint: disable=protected-access
          f'task.init_checkpoint={init_checkpoint}', *extra]


def build_config(experiment: str, overrides: Sequence[str]):
  """The ExperimentConfig that `official_cvrl.train` builds from these overrides (strict keys, validated).

  The driver builds every variant's config before training anything, so a misspelt or vanished field fails in
  a second, not after twenty minutes of other variants.
  """
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top
  from official.modeling import hyperparams  # pylint: disable=g-import-not-at-top
  from official_cvrl import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  config = exp_factory.get_exp_config(experiment)
  config = hyperparams.override_params_dict(config, ','.join(overrides), is_strict=True)
  config.validate()
  config.task.validate()
  return config


def train_command(experiment: str, model_dir: str, seed: int, overrides: Sequence[str]) -> List[str]:
  """The `official_cvrl.train` command line, as the demo's stages 3 and 4 write it."""
  return demo._python(  # pylint: disable=protected-access
      'official_cvrl.train', f'--experiment={experiment}', '--mode=train_and_eval', f'--model_dir={model_dir}',
      f'--seed={seed}', '--params_override=' + ','.join(overrides))


def _flatten(tree: Dict[str, Any], prefix: str = '') -> Dict[str, Any]:
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_changes(experiment: str, overrides: Sequence[str]) -> Dict[str, Any]:
  """The fields (dotted) where the built config differs from the registered experiment, and their values."""
  config = _flatten(build_config(experiment, overrides).as_dict())
  default = _flatten(build_config(experiment, []).as_dict())
  return {key: value for key, value in config.items() if default.get(key, object()) != value}


def _run_key(*changes: Tuple[str, Dict[str, Any]]) -> str:
  """Names a run by what it changes in each experiment.

  Two studies that spell one configuration differently (a field set to its default, or not set) share the run;
  a field another change adds to an experiment, at a default that changes nothing, does not orphan finished runs.
  After changing a demo experiment's defaults, start a new --output_dir.
  """
  text = json.dumps(changes, sort_keys=True, default=str)
  return hashlib.sha1(text.encode()).hexdigest()[:12]


def _read_json(path: str) -> Optional[Dict[str, Any]]:
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _write_json(path: str, data: Dict[str, Any]) -> None:
  """Writes atomically, so an interrupted study never leaves a half-written result that looks finished."""
  with open(path + '.tmp', 'w') as f:
    json.dump(data, f, indent=2)
  os.replace(path + '.tmp', path)


def _last(model_dir: str, tag: str) -> Optional[float]:
  values = demo.read_scalars(os.path.join(model_dir, 'validation')).get(tag)
  return values[-1][1] if values else None


def _stage(title: str, command: List[str], log_path: str, marker: str) -> float:
  """Runs one training stage unless its marker says it finished; returns the seconds it took (0 if cached)."""
  if os.path.exists(marker):
    return 0.0
  start = time.time()
  demo.run_stage(title, command, log_path)
  seconds = time.time() - start
  _write_json(marker, {'seconds': seconds, 'load_average': os.getloadavg()})
  return seconds


def run_variant_seed(title: str, run_dir: str, seed: int, pretrain: List[str], probe_extra: Sequence[str],
                     records_dir: str, variant_name: str) -> Dict[str, Any]:
  """Pretrains (if `pretrain`), probes and records one run; returns its result (cached in `run.json`)."""
  result_path = os.path.join(run_dir, 'run.json')
  cached = _read_json(result_path)
  if cached is not None:
    return cached
  os.makedirs(run_dir, exist_ok=True)
  load_before = os.getloadavg()
  commands = []
  seconds = 0.0
  init_checkpoint = ''
  if pretrain:
    pretrain_dir = os.path.join(run_dir, 'pretrain')
    commands.append(train_command(PRETRAIN_EXPERIMENT, pretrain_dir, seed, pretrain))
    seconds += _stage(f'{title}: pretraining', commands[-1], os.path.join(run_dir, 'logs', 'pretrain.log'),
                      os.path.join(run_dir, 'pretrain_done.json'))
    init_checkpoint = pretrain_dir
  probe_dir = os.path.join(run_dir, 'linear_eval')
  commands.append(train_command(PROBE_EXPERIMENT, probe_dir, seed,
                                probe_overrides(records_dir, init_checkpoint, probe_extra)))
  seconds += _stage(f'{title}: linear probe', commands[-1], os.path.join(run_dir, 'logs', 'linear_eval.log'),
                    os.path.join(run_dir, 'probe_done.json'))
  top1 = _last(probe_dir, 'accuracy')
  if top1 is None:
    raise RuntimeError(f'no test accuracy in {probe_dir}/validation; see {run_dir}/logs/linear_eval.log.')
  result = {
      'variant': variant_name, 'seed': seed, 'top1': 100 * top1,
      'top5': _percent(_last(probe_dir, 'top_5_accuracy')),
      'contrastive_accuracy': _percent(_last(os.path.join(run_dir, 'pretrain'), 'contrastive_accuracy')),
      'contrastive_loss': _last(os.path.join(run_dir, 'pretrain'), 'contrastive_loss'),
      'seconds': seconds, 'load_average_before': load_before, 'load_average_after': os.getloadavg(),
      'commands': [' '.join(c) for c in commands],
  }
  _write_json(result_path, result)
  return result


def _percent(value: Optional[float]) -> Optional[float]:
  return None if value is None else 100 * value


def portable(text: str) -> str:
  """A command or path as run from the repository root: no machine-specific interpreter or folder prefix."""
  return text.replace(sys.executable, 'python').replace(os.getcwd() + os.sep, '')


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
  """Mean and sample standard deviation (n - 1; 0 for one value)."""
  mean = sum(values) / len(values)
  if len(values) < 2:
    return mean, 0.0
  return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def summarise(name: str, runs: List[Dict[str, Any]], **extra: Any) -> Dict[str, Any]:
  """One variant's entry of the study JSON from its per-seed runs."""
  top1 = [r['top1'] for r in runs]
  mean, std = mean_std(top1)
  entry = {'name': name, 'seeds': [r['seed'] for r in runs], 'top1': top1, 'mean': mean, 'std': std}
  contrastive = [r['contrastive_accuracy'] for r in runs if r['contrastive_accuracy'] is not None]
  if contrastive:
    entry['contrastive_accuracy'] = contrastive
    entry['contrastive_accuracy_mean'], entry['contrastive_accuracy_std'] = mean_std(contrastive)
  entry.update(extra)
  entry['seconds'] = [r['seconds'] for r in runs]
  entry['commands'] = [[portable(c) for c in r['commands']] for r in runs]
  return entry


def paper_order_margins(variants: Sequence[Dict[str, Any]], order: Sequence[str] = ()) -> List[Dict[str, Any]]:
  """Our margins between neighbours in the paper's ranking: does each of its "a > b" hold here, beyond noise?

  Returns:
    For each pair (a, b) adjacent in the paper's order (best first): the paper's difference, ours, its standard
    error sqrt(std_a^2 / n_a + std_b^2 / n_b) from the seed spread, and ours / that error (|z| > 2: beyond noise).
  """
  if order:
    by_name = {v['name']: v for v in variants}
    ranked = [by_name[name] for name in order if name in by_name]
  else:
    ranked = sorted(variants, key=lambda v: -v['paper_top1'])
  margins = []
  for a, b in zip(ranked, ranked[1:]):
    error = math.sqrt(a['std'] ** 2 / len(a['top1']) + b['std'] ** 2 / len(b['top1']))
    ours = a['mean'] - b['mean']
    known = a['paper_top1'] is not None and b['paper_top1'] is not None
    margins.append({'better_in_paper': a['name'], 'worse_in_paper': b['name'],
                    'paper_difference': a['paper_top1'] - b['paper_top1'] if known else None,
                    'our_difference': ours,
                    'standard_error': error, 'z': ours / error if error else None})
  return margins


def markdown_table(results: Dict[str, Any]) -> str:
  """The study as a Markdown table: our mean +- std and per-seed values beside the paper's number."""
  contrastive = any('contrastive_accuracy_mean' in v for v in results['variants'])
  header = ['variant', 'ours: top-1 mean +- std', 'per seed', f'paper ({results["paper"]})']
  header += ['held-out contrastive acc.'] if contrastive else []
  lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
  rows = list(results['variants'])
  if results.get('random_init'):
    rows.append(dict(results['random_init'], paper_top1=None))
  for v in rows:
    cells = [v['name'], f'{v["mean"]:.1f} +- {v["std"]:.1f}', ' / '.join(f'{t:.1f}' for t in v['top1']),
             '-' if v.get('paper_top1') is None else f'{v["paper_top1"]:.1f}']
    if contrastive:
      cells.append(f'{v["contrastive_accuracy_mean"]:.1f} +- {v["contrastive_accuracy_std"]:.1f}'
                   if 'contrastive_accuracy_mean' in v else '-')
    lines.append('| ' + ' | '.join(cells) + ' |')
  return '\n'.join(lines)


def plot(results: Dict[str, Any], path: str) -> None:
  """Our mean +- std (and each seed) per variant on the left axis, the paper's top-1 on the right one."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  variants = results['variants']
  x = list(range(len(variants)))
  fig, ours = plt.subplots(figsize=(1.6 * len(variants) + 2.5, 4.2))
  ours.bar([i - 0.2 for i in x], [v['mean'] for v in variants], width=0.4, yerr=[v['std'] for v in variants],
           capsize=4, color='tab:blue', alpha=0.8, label='ours: demo linear probe, mean +- std')
  for i, v in zip(x, variants):
    ours.plot([i - 0.2] * len(v['top1']), v['top1'], 'k.', markersize=5)
  baseline = results.get('random_init')
  if baseline:
    ours.axhline(baseline['mean'], color='tab:gray', linestyle='--', label='ours: random-init backbone')
  ours.set_ylabel('demo test top-1 (%)', color='tab:blue')
  paper = ours.twinx()
  known = [(i, v['paper_top1']) for i, v in zip(x, variants) if v['paper_top1'] is not None]
  paper.bar([i + 0.2 for i, _ in known], [top1 for _, top1 in known], width=0.4, color='tab:orange', alpha=0.8,
            label=f'paper {results["paper"]} ({results.get("paper_setting", "K400 linear, R3D-50")})')
  paper.set_ylabel('paper top-1 (%)', color='tab:orange')
  # Each axis spans its own values, so the orderings (the claims) are compared, not the absolute levels.
  for axis, values in ((ours, [v['mean'] - v['std'] for v in variants] + [v['mean'] + v['std'] for v in variants]
                        + ([baseline['mean']] if baseline else [])),
                       (paper, [top1 for _, top1 in known])):
    low, high = min(values), max(values)
    margin = max(1.0, 0.15 * (high - low))
    axis.set_ylim(max(0.0, low - 3 * margin), min(100.0, high + margin))
  ours.set_xticks(x)
  ours.set_xticklabels([v['name'] for v in variants], rotation=15)
  seeds = len(variants[0]['top1']) if variants else 0
  ours.set_title(f'{results["study"]} ({results["paper"]}), {seeds} seed(s)')
  handles = ours.get_legend_handles_labels()
  more = paper.get_legend_handles_labels()
  ours.legend(handles[0] + more[0], handles[1] + more[1], loc='upper center', bbox_to_anchor=(0.5, -0.2),
              ncol=3, fontsize=8, frameon=False)
  fig.tight_layout()
  fig.savefig(path, dpi=100, bbox_inches='tight')
  plt.close(fig)


def prepare_records(output_dir: str) -> str:
  if FLAGS.records_dir:
    return os.path.abspath(FLAGS.records_dir)
  return demo.convert_videos(output_dir, demo.generate_videos(output_dir))


def run_study(study_name: str, seeds: Sequence[int], output_dir: str, records_dir: str) -> Dict[str, Any]:
  """Runs (or reuses) every run of the study, then writes `<study>.json` and `<study>.png`."""
  study = STUDIES[study_name]
  variants = [v for v in study.variants if not FLAGS.variants or v.name in FLAGS.variants]
  unknown = set(FLAGS.variants or ()) - {v.name for v in study.variants}
  if unknown:
    raise app.UsageError(f'--variants: {sorted(unknown)} not in study {study_name}: '
                         f'{[v.name for v in study.variants]}.')
  defaults = demo_defaults()
  # Every config is built now, so a bad field fails before any training. The probe's init_checkpoint differs per
  # run directory; its key uses the random-init config, the same for every run.
  probe = (PROBE_EXPERIMENT, config_changes(PROBE_EXPERIMENT, probe_overrides(records_dir, '', FLAGS.probe_overrides)))
  plans = []
  for variant in variants:
    overrides = pretrain_overrides(variant, FLAGS.base_steps, defaults, records_dir, FLAGS.pretrain_overrides)
    plans.append((variant, overrides, _run_key((PRETRAIN_EXPERIMENT, config_changes(PRETRAIN_EXPERIMENT, overrides)),
                                               probe)))

  jobs = [(v.name, os.path.join(output_dir, 'runs', key, f'seed_{s}'), s, o) for v, o, key in plans for s in seeds]
  if FLAGS.random_baseline:
    key = 'random_init_' + _run_key(probe)
    jobs += [('random init', os.path.join(output_dir, 'runs', key, f'seed_{s}'), s, []) for s in seeds]
  start = time.time()
  trained = 0
  runs: Dict[Tuple[str, int], Dict[str, Any]] = {}
  for index, (name, run_dir, seed, overrides) in enumerate(jobs, 1):
    title = f'[{study_name} {index}/{len(jobs)}] {name}, seed {seed}'
    cached = os.path.exists(os.path.join(run_dir, 'run.json'))
    result = run_variant_seed(title, run_dir, seed, overrides, FLAGS.probe_overrides, records_dir, name)
    runs[(name, seed)] = result
    trained += 0 if cached else 1
    remaining = len(jobs) - index
    eta = f', about {(time.time() - start) / trained * remaining / 60:.0f} min left' if trained and remaining else ''
    _print(f'{title}: top-1 {result["top1"]:.1f}%' + (' (finished earlier, reused)' if cached else
                                                      f' in {result["seconds"]:.0f} s{eta}'))

  results = {
      'study': study_name, 'paper': study.paper, 'paper_setting': study.setting, 'claim': study.claim,
      'metric': 'linear-probe top-1 (%) on the demo test videos (cvrl_linear_eval_demo on the frozen backbone)',
      'base_steps': FLAGS.base_steps, 'demo_defaults': defaults,
      'variants': [summarise(v.name, [runs[(v.name, s)] for s in seeds], paper_top1=v.paper_top1,
                             schedule=schedule(v, FLAGS.base_steps, defaults), overrides=[portable(e) for e in o],
                             run_dirs=[os.path.relpath(os.path.join(output_dir, 'runs', k, f'seed_{s}'), output_dir)
                                       for s in seeds])
                   for v, o, k in plans],
      'seconds_this_call': time.time() - start,
      # Kept across resumed calls: what every run (pretraining + probe) took when it ran.
      'run_seconds_total': sum(r['seconds'] for r in runs.values()),
  }
  results['paper_order_margins'] = paper_order_margins(results['variants'], study.order)
  if FLAGS.random_baseline:
    results['random_init'] = summarise('random init', [runs[('random init', s)] for s in seeds])
  _write_json(os.path.join(output_dir, f'{study_name}.json'), results)
  plot(results, os.path.join(output_dir, f'{study_name}.png'))
  return results


def main(argv: Sequence[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if FLAGS.study is None:
    raise app.UsageError(f'--study is required: one of {STUDIES_HELP}.')
  for demo_flag, ours in (('seed', '--seeds'), ('pretrain_steps', '--base_steps')):
    if not FLAGS[demo_flag].using_default_value:
      raise app.UsageError(f'--{demo_flag} is the demo\'s flag; the ablations use {ours}.')
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  output_dir = os.path.abspath(DEFAULT_OUTPUT_DIR if FLAGS['output_dir'].using_default_value else FLAGS.output_dir)
  os.makedirs(output_dir, exist_ok=True)
  seeds = [int(s) for s in FLAGS.seeds]
  records_dir = prepare_records(output_dir)
  results = run_study(FLAGS.study, seeds, output_dir, records_dir)
  _print(f'\n=== {results["study"]} ({results["paper"]}), {len(seeds)} seed(s): linear-probe top-1 (%)')
  _print(markdown_table(results))
  _print(f'Saved {os.path.join(output_dir, results["study"] + ".json")} and .png')


if __name__ == '__main__':
  app.run(main)
