"""The main job on the embedded demo data: raw videos -> TFRecords -> pretrain -> evaluate -> export -> table.

    python -m official_cvrl.demo --output_dir=demo_output          (what `make demo` runs)

Every stage runs the project's own command-line tool in a subprocess, exactly as a user would type it, with its
full log in `<output_dir>/logs/` and a one-line progress summary here. Stages whose outputs are complete are
skipped, so an interrupted demo resumes where it stopped (training resumes from its last checkpoint).

Stages:
  1. data_tools.synthetic.demo_dataset renders the procedural action videos (mp4) for train / val / test;
  2. data_tools.convert turns each split into TFRecord shards (the same converter as for Kinetics);
  3. official_cvrl.train pretrains CVRL (experiment cvrl_pretrain_demo) on the train split, without labels;
  4. official_cvrl.train runs the linear evaluation protocol (cvrl_linear_eval_demo) on the frozen pretrained
     backbone, and again on a randomly initialised backbone, the baseline CVRL must beat;
  5. official_cvrl.serving.export_saved_model exports the pretrained encoder for TF Serving, and
     official_cvrl.evaluate_retrieval measures video retrieval (test videos as queries against the training
     videos, R@k) with its features and with those of the random baseline (exported from its linear evaluation);
  6. action detection (skip with --nodetection): data_tools.synthetic.synthetic_detection writes keyframe records in the
     AVA format (the demo's objects doing its motion actions, several per scene, 128 labelled keyframes), and
     official_cvrl.train fine-tunes the detector (cvrl_action_detection_demo) from the pretrained backbone and
     from a random one, reporting frame mAP@0.5 with the official AVA protocol;
  7. a results table (printed, and saved as results.md / results.json, with each stage's wall-clock and CPU
     time) and the pretraining curves (PNG).

The stages after rendering run in two lanes side by side (`--lanes=2`, the default). The train and test splits
convert at the same time (after val, which creates the shared label map). Then come the pretrained lane
(3, 4, 5 and 6 for the pretrained backbone) and the baseline lane (the detection data, then 4, 5 and 6 for the
random backbone), which needs nothing from the other. A stage does not keep two cores busy all the time (process
start-up, graph tracing, evaluation, checkpoints), and the other lane fills those gaps. `--lanes=1` runs every
stage in order. If a stage fails, the other lane's running stage is stopped and the demo exits with the failing
stage's code.
"""
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app
from absl import flags

flags.DEFINE_string('output_dir', 'demo_output', 'Folder for every artefact of the demo.')
flags.DEFINE_integer('seed', 0, 'Seed of model initialisation and input sampling (the dataset itself is fixed).')
flags.DEFINE_integer('pretrain_steps', None, 'Override the pretraining length of cvrl_pretrain_demo.')
flags.DEFINE_integer('num_train', None, 'Training videos to generate (generator default when unset).')
flags.DEFINE_integer('num_val', None, 'Validation videos to generate (generator default when unset).')
flags.DEFINE_integer('num_test', None, 'Test videos to generate (generator default when unset).')
flags.DEFINE_integer('workers', 2, 'Processes for video generation and conversion.')
flags.DEFINE_bool('detection', True, 'Also run the action-detection protocol (stage 6, about 3 minutes).')
flags.DEFINE_integer('lanes', 2, 'Run the train and test conversions, then the pretrained and the random-baseline '
                     'stages, side by side (2), or every stage in order (1).', lower_bound=1, upper_bound=2)

FLAGS = flags.FLAGS

# Lines of the subprocess logs worth showing as progress (Orbit's train/eval summaries, tools' progress lines).
_PROGRESS = re.compile(r'(train \| step|eval \| step|videos? .*(/s|ETA)|rendered|converted|\bdone\b|'
                       r'Exported|SavedModel|Wrote|^error:)', re.IGNORECASE)
_NOISE = re.compile(r'cuInit|cuda|TensorRT|oneDNN|Customized initialization')


class _Stages:
  """What the running stages share: their processes, a failure flag and each stage's time."""

  def __init__(self):
    self.lock = threading.Lock()
    self.processes: List[subprocess.Popen] = []
    self.failed = threading.Event()
    self.exit_code = 0  # The first failing stage's, which the demo exits with.
    self.times: List[Dict[str, object]] = []

  def fail(self, code) -> None:
    """Marks the demo as failed with `code` (the first failure's wins) and stops the other lane's stages."""
    with self.lock:
      if not self.failed.is_set():
        self.exit_code = code
        self.failed.set()
      for process in self.processes:
        # os.kill, not Popen.terminate: terminate polls, and a poll from this thread could reap the child before
        # its own lane's wait4 does. A listed child is not reaped yet (its lane removes it after wait4, under
        # this lock), so the pid is still its own.
        os.kill(process.pid, signal.SIGTERM)


_STAGES = _Stages()
_LANE = threading.local()  # The name of the lane a thread runs (`name`), for its progress lines.


def _print(message: str) -> None:
  with _STAGES.lock:
    print(message, flush=True)


def run_stage(name: str, command: Sequence[str], log_path: str) -> None:
  """Runs `command`, streaming its output to `log_path` and progress lines to stdout; exits on failure.

  When two lanes print at once, the lane's name prefixes the progress lines. The stage's wall-clock time and its
  process tree's CPU time (from wait4, so only this stage's, even with another lane running) go to the results.
  """
  lane = getattr(_LANE, 'name', None)
  prefix = f'[{lane}] ' if lane else ''
  if _STAGES.failed.is_set():  # The other lane failed while this one was between stages.
    raise SystemExit(1)
  _print(f'\n=== {prefix}{name}\n    $ {" ".join(command)}\n    (full log: {log_path})')
  os.makedirs(os.path.dirname(log_path), exist_ok=True)
  start = time.time()
  tail: List[str] = []
  last_shown = None
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', PYTHONUNBUFFERED='1')
  with open(log_path, 'a') as log, subprocess.Popen(
      command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env) as process:
    with _STAGES.lock:
      _STAGES.processes.append(process)
    for line in process.stdout:
      log.write(line)
      tail = (tail + [line.rstrip()])[-25:]
      shown = _shorten(line.strip())
      if _PROGRESS.search(shown) and not _NOISE.search(shown) and shown != last_shown:
        _print('    ' + prefix + shown)
        last_shown = shown  # absl and Python logging may both echo the same line.
    _, status, usage = os.wait4(process.pid, 0)  # Reaps the child here to read its own resource usage.
    process.returncode = code = os.waitstatus_to_exitcode(status)
    with _STAGES.lock:
      _STAGES.processes.remove(process)
  if code != 0:
    if _STAGES.failed.is_set():
      _print(f'    {prefix}{name}: stopped, because a stage of the other lane failed (log: {log_path})')
      raise SystemExit(code)
    _STAGES.fail(code)
    _print('\n'.join(['    | ' + l for l in tail]))
    _print(f'error: stage "{name}" failed (exit code {code}); see {log_path}. Fix the cause and rerun '
           '`make demo`: finished stages are skipped.')
    sys.exit(code)
  wall, cpu = time.time() - start, usage.ru_utime + usage.ru_stime
  with _STAGES.lock:
    _STAGES.times.append({'stage': name, 'wall_seconds': round(wall, 1), 'cpu_seconds': round(cpu, 1)})
  _print(f'    {prefix}{name}: done in {wall:.0f} s ({cpu:.0f} s of CPU)')


def run_lanes(lanes: Sequence[Tuple[str, Callable[[], None]]], parallel: bool) -> None:
  """Runs (name, lane) one after another or each in its own thread; exits with the first failing stage's code."""
  if not parallel:
    for _, lane in lanes:
      lane()
    return

  def target(name, lane):
    _LANE.name = name
    try:
      lane()
    except SystemExit as e:  # A failed stage has already recorded its code; a stopped one must not replace it.
      if e.code not in (0, None):
        _STAGES.fail(e.code)
    except BaseException:  # A bug in the driver itself: stop the other lane too, then let it surface.
      _STAGES.fail(1)
      raise

  threads = [threading.Thread(target=target, args=lane) for lane in lanes]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  if _STAGES.failed.is_set():
    sys.exit(_STAGES.exit_code)


class _Once:
  """A stage both lanes need (the detection data): the first caller runs it, the other waits for its result."""

  def __init__(self, fn: Callable[[], str]):
    self._fn = fn
    self._lock = threading.Lock()
    self._value: Optional[str] = None

  def __call__(self) -> str:
    with self._lock:
      if self._value is None:
        self._value = self._fn()
      return self._value


def _shorten(line: str, width: int = 150) -> str:
  line = re.sub(r'^[IWE]\d{4} [\d:.]+\s+\d+ \S+\]', '', line).strip()  # absl's log prefix.
  return line if len(line) <= width else line[:width - 3] + '...'


def _python(module: str, *args: str) -> List[str]:
  return [sys.executable, '-m', module, *args]


def _optional_flags(**values: Optional[int]) -> List[str]:
  return [f'--{k}={v}' for k, v in values.items() if v is not None]


def generate_videos(output_dir: str) -> str:
  raw_dir = os.path.join(output_dir, 'raw_videos')
  manifest = os.path.join(raw_dir, 'manifest.json')
  if os.path.exists(manifest) and json.load(open(manifest)).get('status') == 'complete':
    _print(f'\n=== 1. demo videos: already complete in {raw_dir}')
    return raw_dir
  run_stage('1. render demo videos', _python(
      'data_tools.synthetic.demo_dataset', f'--output_dir={raw_dir}', f'--num_workers={FLAGS.workers}',
      *_optional_flags(num_train=FLAGS.num_train, num_val=FLAGS.num_val, num_test=FLAGS.num_test)),
            os.path.join(output_dir, 'logs', '1_render.log'))
  return raw_dir


def convert_videos(output_dir: str, raw_dir: str) -> str:
  """Converts the three splits; with two lanes, train and test side by side after val.

  The demo's splits are small jobs that data_tools.convert runs in one process (one core each, measured: CPU time
  equals wall time), so two conversions fill the two cores. val goes first and alone: it is the shortest, and the
  first conversion creates the label map the others then read.
  """
  records_dir = os.path.join(output_dir, 'tfrecords')
  label_map = os.path.join(records_dir, 'label_map.txt')

  def convert(split: str) -> None:
    report = os.path.join(records_dir, f'report_{split}.jsonl')
    if os.path.exists(report):
      _print(f'\n=== 2. convert {split}: already converted ({report})')
      return
    run_stage(f'2. convert {split} videos to TFRecords', _python(
        'data_tools.convert', '--source=folder', f'--input_dir={os.path.join(raw_dir, split)}',
        f'--split={split}', f'--output_dir={records_dir}', f'--label_map={label_map}', '--fps=0',
        '--short_side=0', f'--direct_num_workers={FLAGS.workers}'),
              os.path.join(output_dir, 'logs', f'2_convert_{split}.log'))

  convert('val')
  run_lanes([('train', lambda: convert('train')), ('test', lambda: convert('test'))], parallel=FLAGS.lanes == 2)
  return records_dir


def _records(records_dir: str, split: str) -> str:
  return os.path.join(records_dir, f'{split}-*-of-*.tfrecord')


def train(output_dir: str, title: str, experiment: str, run_name: str, overrides: Sequence[str],
          log_name: str) -> str:
  """Runs `official_cvrl.train` (train_and_eval) for one stage; returns its model_dir."""
  model_dir = os.path.join(output_dir, run_name)
  run_stage(title, _python(
      'official_cvrl.train', f'--experiment={experiment}', '--mode=train_and_eval', f'--model_dir={model_dir}',
      f'--seed={FLAGS.seed}', '--params_override=' + ','.join(overrides)), os.path.join(output_dir, 'logs', log_name))
  return model_dir


def pretrain(output_dir: str, records_dir: str) -> str:
  overrides = [f'task.train_data.input_path={_records(records_dir, "train")}',
               f'task.validation_data.input_path={_records(records_dir, "val")}']
  if FLAGS.pretrain_steps:
    overrides.append(f'trainer.train_steps={FLAGS.pretrain_steps}')
  return train(output_dir, '3. CVRL pretraining (labels unused)', 'cvrl_pretrain_demo', 'pretrain', overrides,
               '3_pretrain.log')


def linear_eval(output_dir: str, records_dir: str, name: str, init_checkpoint: str) -> str:
  overrides = [f'task.train_data.input_path={_records(records_dir, "train")}',
               f'task.validation_data.input_path={_records(records_dir, "test")}',
               f'task.init_checkpoint={init_checkpoint}']
  return train(output_dir, f'4. linear evaluation, {name} backbone', 'cvrl_linear_eval_demo',
               f'linear_eval_{name}', overrides, f'4_linear_eval_{name}.log')


def _export_run(output_dir: str, folder: str, experiment: str, run_dir: str, title: str, log_name: str) -> str:
  """Exports the encoder of a finished training run once (a folder holding a version is reused)."""
  export_dir = os.path.join(output_dir, folder)
  exported = [v for v in (os.listdir(export_dir) if os.path.isdir(export_dir) else [])
              if os.path.exists(os.path.join(export_dir, v, 'saved_model.pb'))]
  if exported:
    _print(f'\n=== {title}: already exported ({os.path.join(export_dir, max(exported))})')
    return export_dir
  run_stage(title, _python(
      'official_cvrl.serving.export_saved_model', f'--experiment={experiment}',
      f'--config_file={os.path.join(run_dir, "params.yaml")}', f'--checkpoint_path={run_dir}',
      f'--export_dir={export_dir}'), os.path.join(output_dir, 'logs', log_name))
  return export_dir


def export(output_dir: str, pretrain_dir: str) -> str:
  return _export_run(output_dir, 'saved_model', 'cvrl_pretrain_demo', pretrain_dir,
                     '5. export SavedModel for TF Serving', '5_export.log')


def retrieval(output_dir: str, records_dir: str, name: str, saved_model_dir: str) -> str:
  """R@k of the test split against the training split with one exported encoder; returns its results file."""
  retrieval_dir = os.path.join(output_dir, f'retrieval_{name}')
  results = os.path.join(retrieval_dir, 'retrieval_results.json')
  if os.path.exists(results):
    _print(f'\n=== 5. retrieval, {name} backbone: already done ({results})')
    return results
  # One centre clip per video: it gave the same R@1 as the linear evaluation's 4 clips (88.5% both, seed 0) in
  # half the time, and this stage should add little to the demo.
  run_stage(f'5. video retrieval, {name} backbone', _python(
      'official_cvrl.evaluate_retrieval', f'--saved_model_dir={saved_model_dir}',
      f'--train_input={_records(records_dir, "train")}', f'--test_input={_records(records_dir, "test")}',
      '--splits=', f'--output_dir={retrieval_dir}', '--num_clips=1', '--batch_size=64'),
            os.path.join(output_dir, 'logs', f'5_retrieval_{name}.log'))
  return results


def export_random_baseline(output_dir: str, linear_eval_dir: str) -> str:
  """Exports the random-init linear evaluation run: its frozen backbone is the random baseline's encoder."""
  return _export_run(output_dir, 'saved_model_random', 'cvrl_linear_eval_demo', linear_eval_dir,
                     '5. export the random baseline\'s encoder', '5_export_random.log')


def detection_data(output_dir: str) -> str:
  records_dir = os.path.join(output_dir, 'detection_tfrecords')
  if os.path.exists(os.path.join(records_dir, 'label_map.pbtxt')):  # Written last, after the renamed shards.
    _print(f'\n=== 6. detection data: already complete in {records_dir}')
    return records_dir
  run_stage('6. synthetic action-detection data (AVA record format)', _python(
      'data_tools.synthetic.synthetic_detection', f'--output_dir={records_dir}'),
            os.path.join(output_dir, 'logs', '6_detection_data.log'))
  return records_dir


def detection(output_dir: str, records_dir: str, name: str, init_checkpoint: str) -> str:
  overrides = [f'task.train_data.input_path={os.path.join(records_dir, "train-*")}',
               f'task.validation_data.input_path={os.path.join(records_dir, "val-*")}',
               f'task.evaluation.label_map_path={os.path.join(records_dir, "label_map.pbtxt")}',
               f"task.init_checkpoint='{init_checkpoint}'"]
  return train(output_dir, f'6. action detection fine-tuning, {name} backbone', 'cvrl_action_detection_demo',
               f'detection_{name}', overrides, f'6_detection_{name}.log')


def read_scalars(event_dir: str) -> Dict[str, List[tuple]]:
  """All scalar summaries under `event_dir` as {tag: [(step, value), ...]} sorted by step."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  (keeps the stages' start-up light)
  scalars: Dict[str, Dict[int, float]] = {}
  if not tf.io.gfile.exists(event_dir):
    return {}
  for name in sorted(tf.io.gfile.listdir(event_dir)):
    if 'tfevents' not in name:
      continue
    for record in tf.data.TFRecordDataset(os.path.join(event_dir, name)):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        number = value.simple_value if value.HasField('simple_value') else float(tf.make_ndarray(value.tensor))
        scalars.setdefault(value.tag, {})[event.step] = number
  return {tag: sorted(values.items()) for tag, values in scalars.items()}


def _last(scalars: Dict[str, List[tuple]], tag: str) -> Optional[float]:
  values = scalars.get(tag)
  return values[-1][1] if values else None


def plot_pretraining(pretrain_dir: str, path: str) -> None:
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  train = read_scalars(os.path.join(pretrain_dir, 'train'))
  validation = read_scalars(os.path.join(pretrain_dir, 'validation'))
  # Top row: the contrastive terms; bottom row: the label-free health of the embeddings and the kNN monitor.
  tags = ('contrastive_loss', 'contrastive_accuracy', 'contrastive_entropy', 'learning_rate',
          'effective_rank', 'alignment', 'uniformity', 'knn_top1')
  fig, axes = plt.subplots(2, len(tags) // 2, figsize=(2 * len(tags), 6.4))
  for axis, tag in zip(axes.reshape(-1), tags):
    for label, scalars in (('train', train), ('validation', validation)):
      if tag in scalars:
        steps, values = zip(*scalars[tag])
        axis.plot(steps, values, marker='o' if label == 'validation' else None, markersize=3, label=label)
    axis.set_title(tag)
    axis.set_xlabel('step')
    if axis.lines:
      axis.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def read_retrieval(results_path: str) -> Optional[Dict[str, float]]:
  """{'R@k': recall} of an evaluate_retrieval results file (one set, no splits), or None when absent."""
  if not os.path.exists(results_path):
    return None
  with open(results_path) as f:
    return {f'R@{k}': value for k, value in json.load(f)['mean'].items()}


def results_table(output_dir: str, pretrain_dir: str, eval_dirs: Dict[str, str], export_dir: str,
                  detection_dirs: Optional[Dict[str, str]] = None,
                  retrieval_files: Optional[Dict[str, str]] = None,
                  stage_times: Sequence[Dict[str, object]] = (), total_seconds: Optional[float] = None) -> str:
  """Writes results.json / results.md from the runs' summaries and returns the Markdown table.

  `stage_times` are the stages this call ran (skipped, finished stages have none); they and `total_seconds` go to
  results.json and below the table in results.md, so a run's cost is recorded next to its numbers.
  """
  pretrain_validation = read_scalars(os.path.join(pretrain_dir, 'validation'))
  rows = []
  for name, model_dir in eval_dirs.items():
    scalars = read_scalars(os.path.join(model_dir, 'validation'))
    rows.append({'backbone': name, 'top_1': _last(scalars, 'accuracy'), 'top_5': _last(scalars, 'top_5_accuracy')})
  detection_rows = [{'backbone': name, 'frame_map': _last(read_scalars(os.path.join(d, 'validation')), 'frame_map')}
                    for name, d in (detection_dirs or {}).items()]
  retrieval_rows = [{'backbone': name, **(read_retrieval(path) or {})} for name, path in
                    (retrieval_files or {}).items()]
  results = {
      'seed': FLAGS.seed,
      'linear_eval_test': rows,
      'detection_frame_map': detection_rows,
      'retrieval_test_vs_train': retrieval_rows,
      'pretrain_validation_contrastive_accuracy': _last(pretrain_validation, 'contrastive_accuracy'),
      'pretrain_validation_contrastive_loss': _last(pretrain_validation, 'contrastive_loss'),
      'saved_model': export_dir,
      'lanes': FLAGS.lanes,
      'stage_seconds': list(stage_times),
      'total_seconds': None if total_seconds is None else round(total_seconds, 1),
  }

  def pct(value):
    return 'n/a' if value is None else f'{100 * value:.1f}%'

  lines = ['| backbone | linear eval top-1 (test) | top-5 |', '|---|---|---|']
  lines += [f'| {r["backbone"]} | {pct(r["top_1"])} | {pct(r["top_5"])} |' for r in rows]
  if retrieval_rows:
    ks = ('R@1', 'R@5', 'R@10', 'R@20', 'R@50')
    lines += ['', '| backbone | retrieval (test queries vs train videos) ' + ' | '.join(ks) + ' |',
              '|---|' + '---|' * len(ks)]
    lines += [f'| {r["backbone"]} | ' + ' | '.join(pct(r.get(k)) for k in ks) + ' |' for r in retrieval_rows]
  if detection_rows:
    lines += ['', '| backbone | action detection frame mAP@0.5 (synthetic, 128 labelled keyframes) |', '|---|---|']
    lines += [f'| {r["backbone"]} | {pct(r["frame_map"])} |' for r in detection_rows]
  lines.append('')
  lines.append(f'CVRL pretraining, held-out contrastive accuracy (positive ranked first): '
               f'{pct(results["pretrain_validation_contrastive_accuracy"])}')
  table = '\n'.join(lines)
  timing = ''
  if stage_times:
    timing_lines = [f'Time of the stages this run executed ({FLAGS.lanes} lane(s); wall-clock overlaps with 2):', '',
                    '| stage | wall (s) | CPU (s) |', '|---|---|---|']
    timing_lines += [f'| {t["stage"]} | {t["wall_seconds"]:.0f} | {t["cpu_seconds"]:.0f} |' for t in stage_times]
    if total_seconds is not None:
      timing_lines.append(f'| all (this command, wall) | {total_seconds:.0f} | |')
    timing = '\n\n' + '\n'.join(timing_lines)
  with open(os.path.join(output_dir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  with open(os.path.join(output_dir, 'results.md'), 'w') as f:
    f.write(f'# CVRL demo results (seed {FLAGS.seed})\n\n{table}{timing}\n')
  return table + timing


def main(_):
  # The results stage reads summaries with tf.data in this process: keep TensorFlow's C++ logs out of the table.
  os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  start = time.time()
  output_dir = os.path.abspath(FLAGS.output_dir)
  os.makedirs(output_dir, exist_ok=True)
  raw_dir = generate_videos(output_dir)
  records_dir = convert_videos(output_dir, raw_dir)
  detection_records = _Once(lambda: detection_data(output_dir))
  pretrained, baseline = {}, {}  # What each lane produced, by stage.

  def pretrained_lane():
    pretrained['pretrain'] = pretrain(output_dir, records_dir)
    pretrained['linear_eval'] = linear_eval(output_dir, records_dir, 'cvrl', init_checkpoint=pretrained['pretrain'])
    pretrained['export'] = export(output_dir, pretrained['pretrain'])
    pretrained['retrieval'] = retrieval(output_dir, records_dir, 'cvrl', pretrained['export'])
    if FLAGS.detection:
      pretrained['detection'] = detection(output_dir, detection_records(), 'cvrl',
                                          init_checkpoint=pretrained['pretrain'])

  def baseline_lane():
    if FLAGS.detection:
      detection_records()  # First, so that the pretrained lane finds the data ready.
    baseline['linear_eval'] = linear_eval(output_dir, records_dir, 'random', init_checkpoint='')
    baseline['retrieval'] = retrieval(output_dir, records_dir, 'random',
                                      export_random_baseline(output_dir, baseline['linear_eval']))
    if FLAGS.detection:
      baseline['detection'] = detection(output_dir, detection_records(), 'random', init_checkpoint='')

  run_lanes([('pretrained', pretrained_lane), ('baseline', baseline_lane)], parallel=FLAGS.lanes == 2)
  names = {'CVRL pretrained': pretrained, 'random init': baseline}
  eval_dirs = {name: lane['linear_eval'] for name, lane in names.items()}
  retrieval_files = {name: lane['retrieval'] for name, lane in names.items()}
  detection_dirs = {name: lane['detection'] for name, lane in names.items()} if FLAGS.detection else {}
  plot_path = os.path.join(output_dir, 'pretraining_curves.png')
  plot_pretraining(pretrained['pretrain'], plot_path)
  table = results_table(output_dir, pretrained['pretrain'], eval_dirs, pretrained['export'], detection_dirs,
                        retrieval_files, stage_times=_STAGES.times, total_seconds=time.time() - start)
  _print(f'\n=== 7. results (seed {FLAGS.seed}, {(time.time() - start) / 60:.1f} min)\n{table}\n')
  _print(f'Saved: {os.path.join(output_dir, "results.md")}, {plot_path}, SavedModel in {pretrained["export"]}')


if __name__ == '__main__':
  app.run(main)
