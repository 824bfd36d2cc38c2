"""A restartable Apache Beam pipeline that converts work items into sharded TFRecords with a per-item report.

The per-item conversion is pluggable (`ItemConverter`): the video converter turns one video into one
SequenceExample; the AVA converter can turn one keyframe into one clip with boxes and reuse everything else here:
deterministic sharding, atomic shard files, resuming, the failure report and progress output.

How a run works:
1. The launcher assigns items to shards (`shards.assign_shards`) and writes the plan to the state folder; Beam
   elements are shard indices only, so the job graph stays small for a million items (Dataflow limits its size).
2. Each worker converts one shard at a time: items in plan order, records streamed to a temporary file, then the
   shard's report part and the shard are renamed into place. A failing item becomes a report line; it never stops
   the shard. Memory is bounded by one item, whatever the shard size.
3. A shard is done when its file exists and its report part carries the fingerprint of the same items and
   settings; a re-run skips done shards and redoes the rest (after a kill, a crash, or changed settings).
4. The launcher merges report parts into `report_<prefix>.jsonl`.

On the local machine the default engine is Beam's FnApiRunner (the engine behind the DirectRunner) in
multi-processing mode, one worker per CPU. It is called directly because the DirectRunner first tries to download
the Prism runner binary from the internet. Any other `--runner` and its options pass straight to Beam.
"""

import abc
import dataclasses
import hashlib
import importlib
import json
import logging
import os
import pickle
import sys
import threading
import time
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import apache_beam as beam
from apache_beam.options import pipeline_options
import tensorflow as tf

from data_tools import report
from data_tools import shards

_LOCAL_RUNNERS = ('DirectRunner', 'direct', 'FnApiRunner')


@dataclasses.dataclass(frozen=True)
class WorkItem:
  """One input: a unique id (sorting, sharding, report) and a picklable payload the converter understands."""
  item_id: str
  payload: Any


@dataclasses.dataclass
class Converted:
  """What converting one item produced: serialized records and facts for its report line."""
  records: List[bytes]
  details: Dict[str, Any] = dataclasses.field(default_factory=dict)


class ItemConverter(abc.ABC):
  """Converts one work item into serialized records. Pickled and shipped to every Beam worker."""

  @abc.abstractmethod
  def fingerprint(self) -> str:
    """Text that changes whenever the output bytes would (settings, label map, format version)."""

  def setup(self) -> None:
    """Called once per worker before converting (open resources, import heavy modules)."""

  @abc.abstractmethod
  def convert(self, payload: Any) -> Converted:
    """Converts one payload.

    Raises:
      report.ConversionError: for an expected failure; its `reason` goes into the report.
    """

  def describe(self, payload: Any) -> Dict[str, Any]:
    """Facts about the input for its report line (e.g. path and label); kept even when conversion fails."""
    del payload
    return {}


@dataclasses.dataclass
class RunResult:
  """Outcome of `run`.

  Attributes:
    entries: one report entry per input (including `pre_failed` ones).
    report_path: the merged JSON-lines report.
    shard_paths: every shard of the set, in index order.
    converted_shards: shards written by this run.
    skipped_shards: shards already complete from an earlier run.
    seconds: wall time of the run.
    written_entries: the entries of the shards this run wrote: what a summary of this run's work counts (a
      resumed run that redoes 1 of 9 shards stored that shard's frames, not the whole set's).
  """
  entries: List[report.ReportEntry]
  report_path: str
  shard_paths: List[str]
  converted_shards: int
  skipped_shards: int
  seconds: float
  written_entries: List[report.ReportEntry] = dataclasses.field(default_factory=list)

  @property
  def num_failed(self) -> int:
    return sum(e.status == report.FAILED for e in self.entries)

  @property
  def failure_fraction(self) -> float:
    return self.num_failed / max(1, len(self.entries))


@dataclasses.dataclass(frozen=True)
class _ShardPlan:
  fingerprint: str
  items: Tuple[WorkItem, ...]


def _plan_path(output_dir: str, prefix: str) -> str:
  return os.path.join(shards.state_dir(output_dir), f'{prefix}.plan.pkl')


def _part_path(output_dir: str, name: str) -> str:
  return os.path.join(shards.state_dir(output_dir), name + '.report.json')


def _progress_path(output_dir: str, name: str) -> str:
  return os.path.join(shards.state_dir(output_dir), name + '.progress')


def _read_part(path: str) -> Optional[Dict[str, Any]]:
  if not tf.io.gfile.exists(path):
    return None
  try:
    with tf.io.gfile.GFile(path, 'r') as f:
      return json.load(f)
  except (ValueError, tf.errors.OpError):
    return None


def _shard_is_done(shard_path: str, part_path: str, fingerprint: str) -> bool:
  if not tf.io.gfile.exists(shard_path):
    return False
  part = _read_part(part_path)
  return part is not None and part.get('fingerprint') == fingerprint


class _ConvertShardFn(beam.DoFn):
  """Converts the items of one shard; the element is the shard index."""

  def __init__(self, converter: ItemConverter, output_dir: str, prefix: str):
    super().__init__()
    self._converter = converter
    self._output_dir = output_dir
    self._prefix = prefix
    self._plan: Optional[List[_ShardPlan]] = None

  def setup(self):
    with tf.io.gfile.GFile(_plan_path(self._output_dir, self._prefix), 'rb') as f:
      self._plan = pickle.load(f)
    self._converter.setup()

  def process(self, index: int):
    plan = self._plan[index]
    name = shards.shard_name(self._prefix, index, len(self._plan))
    shard_path = os.path.join(self._output_dir, name)
    part_path = _part_path(self._output_dir, name)
    if _shard_is_done(shard_path, part_path, plan.fingerprint):
      return
    # Delete a stale shard before its new report part can appear, so "shard exists and part matches" can only
    # ever describe a shard written from this plan.
    for stale in (shard_path, part_path):
      if tf.io.gfile.exists(stale):
        tf.io.gfile.remove(stale)
    temporary_dir = shards.state_dir(self._output_dir)
    writer = shards.AtomicTFRecordWriter(shard_path, temporary_dir)
    try:
      entries = []
      last_progress = 0.0
      # Cloud storage allows about one update per second of the same object.
      progress_seconds = 5.0 if '://' in self._output_dir else 1.0
      for done, item in enumerate(plan.items, start=1):
        entries.append(self._convert_item(item, index, writer))
        if time.monotonic() - last_progress > progress_seconds or done == len(plan.items):
          last_progress = time.monotonic()
          _write_progress(_progress_path(self._output_dir, name), done)
      writer.close()
      part = {'fingerprint': plan.fingerprint, 'entries': [json.loads(e.to_json()) for e in entries]}
      shards.write_text_atomically(part_path, json.dumps(part, sort_keys=True), temporary_dir)
      writer.publish()
    except BaseException:
      writer.abort()
      raise
    yield index

  def _convert_item(self, item: WorkItem, index: int, writer: shards.AtomicTFRecordWriter) -> report.ReportEntry:
    try:
      details = dict(self._converter.describe(item.payload))
    except Exception:  # pylint: disable=broad-except
      details = {}
    try:
      converted = self._converter.convert(item.payload)
    except Exception as e:  # pylint: disable=broad-except  # One bad input must never stop the run.
      if not isinstance(e, report.ConversionError):
        logging.error('Unexpected error converting %s:\n%s', item.item_id, traceback.format_exc())
      return report.failed(item.item_id, e, shard=index, details=details)
    for record in converted.records:
      writer.write(record)
    details.update(converted.details)
    details['num_records'] = len(converted.records)
    return report.ReportEntry(item_id=item.item_id, status=report.CONVERTED, shard=index, details=details)


def _write_progress(path: str, done: int) -> None:
  try:
    with tf.io.gfile.GFile(path, 'w') as f:
      f.write(str(done))
  except tf.errors.OpError:
    pass  # Progress is best effort; conversion must not fail because of it.


def _fingerprints(plan_items: List[List[WorkItem]], converter_fingerprint: str, prefix: str) -> List[str]:
  result = []
  for index, items in enumerate(plan_items):
    digest = hashlib.sha256()
    digest.update(f'{converter_fingerprint}\n{shards.shard_name(prefix, index, len(plan_items))}\n'.encode())
    for item in items:
      digest.update(repr(item).encode('utf-8') + b'\n')
    result.append(digest.hexdigest())
  return result


_DASK_RUNNER = 'apache_beam.runners.dask.dask_runner.DaskRunner'
# Runners Beam accepts by module path only, also accepted here by class name (any case, `Runner` optional).
_EXTRA_RUNNER_PATHS = (_DASK_RUNNER,)
# What to install when a runner's module cannot be imported, by a word of its path.
_RUNNER_PACKAGES = {'dask': "'dask[distributed]' (pinned in requirements.txt)", 'dataflow': "'apache-beam[gcp]'"}


def _runner_value(pipeline_args: Sequence[str]) -> Tuple[Optional[str], List[str]]:
  """(the value of the last `--runner`, the arguments without any `--runner`)."""
  value, rest, args = None, [], list(pipeline_args)
  i = 0
  while i < len(args):
    arg = args[i]
    if arg == '--runner' and i + 1 < len(args):
      value, i = args[i + 1], i + 2
      continue
    if arg.startswith('--runner='):
      value = arg.split('=', 1)[1]
    else:
      rest.append(arg)
    i += 1
  return value, rest


def runner_path(name: str) -> str:
  """The module path of runner `name`: Beam's short names (`DataflowRunner`, `flink`, ...) and `DaskRunner`
  resolved as Beam resolves its own, any other name (a module path) unchanged."""
  known = pipeline_options.StandardOptions.ALL_KNOWN_RUNNERS + _EXTRA_RUNNER_PATHS
  by_name = {path.rsplit('.', 1)[-1].lower(): path for path in known}
  return by_name.get(name.lower(), by_name.get(name.lower() + 'runner', name))


def resolve_runner(pipeline_args: Sequence[str]) -> List[str]:
  """Imports the module of `--runner`, so that the options it defines are known; returns the arguments with a
  short name Beam does not resolve itself (`DaskRunner`) replaced by the module path.

  A runner's options (`--dask_client_address`, `--flink_master`, ...) are `PipelineOptions` subclasses defined in
  its module: until that module is imported, Beam neither parses nor lists them.

  Raises:
    ValueError: the runner's module cannot be imported; the message names the runner and what to install.
  """
  name, rest = _runner_value(pipeline_args)
  if not name:
    return list(pipeline_args)
  path = runner_path(name)
  if '.' not in path:
    return list(pipeline_args)  # Beam itself reports an unknown short name, listing the valid ones.
  module, _ = path.rsplit('.', 1)
  try:
    importlib.import_module(module)
  except ImportError as e:
    install = next((package for word, package in _RUNNER_PACKAGES.items() if word in path.lower()), None)
    hint = (f'install {install}' if install else "install the runner's package or check the module path")
    raise ValueError(f'--runner={name}: its module {module} cannot be imported ({e}); {hint}.') from e
  if path in _EXTRA_RUNNER_PATHS:
    return rest + [f'--runner={path}']
  return list(pipeline_args)


def unknown_options(pipeline_args: Sequence[str]) -> Tuple[List[str], List[str]]:
  """Splits out the flags Apache Beam does not know, so a mistyped flag fails instead of being ignored.

  The module of `--runner` is imported first (`resolve_runner`), so that runner's own options count as known.

  Returns:
    (unknown flags, every flag Beam knows) - the second for "did you mean" suggestions.

  Raises:
    ValueError: from `resolve_runner`.
  """
  pipeline_args = resolve_runner(pipeline_args)
  parsers = []
  pipeline_options.PipelineOptions(list(pipeline_args)).get_all_options(add_extra_args_fn=parsers.append)
  _, unknown = parsers[0].parse_known_args(list(pipeline_args))
  known = [flag for action in parsers[0]._actions for flag in action.option_strings]  # pylint: disable=protected-access
  return [a.split('=', 1)[0] for a in unknown if a.startswith('-')], known


def _make_importable_in_worker_processes() -> None:
  """Puts the folder holding `data_tools` on PYTHONPATH, which local worker processes inherit.

  Workers unpickle the converter by module name; without this they find `data_tools` only when the command was
  started from the repository root.
  """
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  paths = [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]
  if root not in paths:
    os.environ['PYTHONPATH'] = os.pathsep.join([root] + paths)


# Below this many items to convert, local runs stay in one process: starting worker processes (each imports
# TensorFlow) takes 5-25 s on a 2-core machine, more than converting a few dozen videos.
IN_PROCESS_BELOW = 32


def make_pipeline(pipeline_args: Sequence[str], in_process: bool = False,
                  log: Callable[[str], None] = logging.info, num_elements: int = 0) -> beam.Pipeline:
  """Builds a Beam pipeline from command-line style options.

  Without `--runner` (or with `--runner=DirectRunner`) the pipeline runs locally on the FnApiRunner in
  multi-processing mode with one worker per CPU, unless `--direct_running_mode` / `--direct_num_workers` say
  otherwise or `in_process` asks for a single process. On the Dask runner each element gets a partition of its
  own unless `--dask_npartitions` / `--dask_partition_size` say otherwise. Other runners (DataflowRunner,
  FlinkRunner, SparkRunner, ...) get the options unchanged.

  Args:
    pipeline_args: Beam command-line options.
    in_process: run locally in this process unless `--direct_running_mode` says otherwise (small jobs, where
      worker start-up would dominate).
    log: where to say that the job runs in-process.
    num_elements: how many elements the pipeline creates (the shards to convert), for the Dask partitioning.

  Returns:
    The pipeline, not yet run.
  """
  args = resolve_runner(pipeline_args)
  options = pipeline_options.PipelineOptions(args)
  runner = options.view_as(pipeline_options.StandardOptions).runner
  if runner == _DASK_RUNNER and num_elements > 0:
    # Dask splits a collection into partitions of 128 elements by default and a partition runs on one worker, so
    # up to 128 shards (hours of decoding each, for Kinetics) would be converted one after another on one worker.
    # Beam's Reshuffle does nothing on Dask: the partitions are what spreads the work.
    if not any(a.startswith(('--dask_npartitions', '--dask_partition_size')) for a in args):
      options = pipeline_options.PipelineOptions(args + [f'--dask_npartitions={num_elements}'])
  if runner and runner not in _LOCAL_RUNNERS:
    return beam.Pipeline(options=options)
  defaults = []
  if not any(a.startswith('--direct_running_mode') for a in args):
    if in_process:
      log('small job: converting in this process, as starting worker processes would take longer; pass '
          '--direct_running_mode=multi_processing to use worker processes anyway.')
      defaults += ['--direct_running_mode=in_memory', '--direct_num_workers=1']
    else:
      defaults.append('--direct_running_mode=multi_processing')
  _make_importable_in_worker_processes()
  if not any(a.startswith('--direct_num_workers') for a in args + defaults):
    defaults.append(f'--direct_num_workers={os.cpu_count() or 1}')
  if not any(a.startswith('--default_sdk_harness_log_level') for a in args):
    defaults.append('--default_sdk_harness_log_level=WARNING')  # Worker processes are chatty at INFO.
  options = pipeline_options.PipelineOptions([a for a in args if not a.startswith('--runner')] + defaults)
  # pylint: disable=g-import-not-at-top
  from apache_beam.portability.api import beam_provision_api_pb2
  from apache_beam.runners.portability import portable_runner
  from apache_beam.runners.portability.fn_api_runner import fn_runner
  # pylint: enable=g-import-not-at-top
  # Workers read their options (e.g. the log level) from the provision info, as under the DirectRunner.
  provision = fn_runner.ExtendedProvisionInfo(beam_provision_api_pb2.ProvisionInfo(
      pipeline_options=portable_runner.JobServiceHandle.encode_pipeline_options(options.get_all_options())))
  return beam.Pipeline(runner=fn_runner.FnApiRunner(provision_info=provision), options=options)


class _Progress:
  """Prints 'done / total, rate, ETA' from the workers' progress files every `interval` seconds."""

  def __init__(self, output_dir: str, prefix: str, todo: Dict[int, int], num_shards: int, interval: float,
               unit: str, log: Callable[[str], None]):
    self._output_dir = output_dir
    self._prefix = prefix
    self._todo = todo  # shard index -> item count
    self._num_shards = num_shards
    self._interval = interval
    self._unit = unit
    self._log = log
    self._total = sum(todo.values())
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._loop, daemon=True)
    self._start = time.monotonic()

  def __enter__(self) -> '_Progress':
    if self._interval > 0:
      self._thread.start()
    return self

  def __exit__(self, *unused_exc) -> None:
    self._stop.set()
    if self._thread.is_alive():
      self._thread.join()

  def count_done(self) -> int:
    done = 0
    for index, count in self._todo.items():
      name = shards.shard_name(self._prefix, index, self._num_shards)
      path = _progress_path(self._output_dir, name)
      try:
        if tf.io.gfile.exists(path):
          with tf.io.gfile.GFile(path, 'r') as f:
            done += min(count, int(f.read() or 0))
      except (ValueError, tf.errors.OpError):
        pass  # A file being rewritten right now; counted on the next tick.
    return done

  def _loop(self) -> None:
    while not self._stop.wait(self._interval):
      self._log(format_progress(self.count_done(), self._total, time.monotonic() - self._start, self._prefix,
                                self._unit))


def format_progress(done: int, total: int, seconds: float, prefix: str, unit: str = 'items') -> str:
  """'[train] 40/100 videos (40.0%), 3.10 videos/s, ETA 0:00:19'."""
  rate = done / seconds if seconds > 0 else 0.0
  line = f'[{prefix}] {done}/{total} {unit} ({100.0 * done / max(1, total):.1f}%), {rate:.2f} {unit}/s'
  if rate > 0:
    remaining = int(round((total - done) / rate))
    line += f', ETA {remaining // 3600}:{remaining // 60 % 60:02d}:{remaining % 60:02d}'
  return line


def _log_to_stderr(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def run(items: Sequence[WorkItem], converter: ItemConverter, *, output_dir: str, prefix: str, num_shards: int,
        pipeline_args: Sequence[str] = (), pre_failed: Sequence[report.ReportEntry] = (),
        progress_interval: float = 10.0, in_process: Optional[bool] = None, unit: str = 'items',
        log: Callable[[str], None] = _log_to_stderr) -> RunResult:
  """Converts `items` into `num_shards` TFRecord shards named `<prefix>-SSSSS-of-NNNNN.tfrecord`.

  Args:
    items: the inputs, with unique ids.
    converter: the per-item conversion.
    output_dir: where shards, `report_<prefix>.jsonl` and the hidden state folder go (local or `gs://`).
    prefix: shard name prefix, usually the split name.
    num_shards: number of shards; must match shards of `prefix` already in `output_dir`.
    pipeline_args: Beam options (`--runner`, `--direct_num_workers`, Dataflow options, ...).
    pre_failed: report entries of inputs rejected before conversion (e.g. duplicate ids).
    progress_interval: seconds between progress lines; 0 disables them.
    in_process: for local runs without --direct_running_mode, whether to convert in this process instead of
      starting worker processes; None decides by the number of items to convert (< `IN_PROCESS_BELOW`).
    unit: what an item is called in progress lines ('videos', 'keyframes').
    log: where progress and status lines go.

  Returns:
    The `RunResult`.

  Raises:
    ValueError: on duplicate ids, no items, or shards of a different count already in `output_dir`.
    RuntimeError: when the pipeline finished but a shard is missing.
  """
  started = time.monotonic()
  ids = [item.item_id for item in items]
  if not items:
    raise ValueError('Nothing to convert: the input listing is empty.')
  existing = shards.existing_shard_counts(output_dir, prefix) - {num_shards}
  if existing:
    raise ValueError(
        f'{output_dir} already holds {prefix} shards of a set with {sorted(existing)} shards, not {num_shards}. '
        f'Delete them or choose another --output_dir (or pass --num_shards={min(existing)} to resume that run).')
  state = shards.state_dir(output_dir)
  tf.io.gfile.makedirs(state)
  removed = shards.remove_temporaries(state, [f'{prefix}-', f'{prefix}.', f'report_{prefix}.'])
  if removed:
    log(f'[{prefix}] removed {removed} partial files left by an interrupted run.')
  for path in tf.io.gfile.glob(os.path.join(state, f'{prefix}-*.progress')):
    tf.io.gfile.remove(path)

  plan_items = [[items[i] for i in positions] for positions in shards.assign_shards(ids, num_shards)]
  fingerprints = _fingerprints(plan_items, converter.fingerprint(), prefix)
  plan = [_ShardPlan(fingerprint, tuple(shard)) for fingerprint, shard in zip(fingerprints, plan_items)]
  names = [shards.shard_name(prefix, i, num_shards) for i in range(num_shards)]
  shard_paths = [os.path.join(output_dir, name) for name in names]
  todo = {i: len(plan[i].items) for i in range(num_shards)
          if not _shard_is_done(shard_paths[i], _part_path(output_dir, names[i]), plan[i].fingerprint)}
  skipped = num_shards - len(todo)
  if skipped:
    log(f'[{prefix}] {skipped} of {num_shards} shards are already complete; converting the other {len(todo)}.')

  if todo:
    plan_path = _plan_path(output_dir, prefix)
    temporary = f'{plan_path}{shards.TEMPORARY_MARK}{os.getpid()}'
    with tf.io.gfile.GFile(temporary, 'wb') as f:
      pickle.dump(plan, f)
    tf.io.gfile.rename(temporary, plan_path, overwrite=True)
    log(f'[{prefix}] converting {sum(todo.values())} {unit} into {len(todo)} shards...')
    if in_process is None:
      in_process = sum(todo.values()) < IN_PROCESS_BELOW
    pipeline = make_pipeline(pipeline_args, in_process, lambda m: log(f'[{prefix}] {m}'), num_elements=len(todo))
    _ = (pipeline
         | 'ShardIndices' >> beam.Create(sorted(todo))
         | 'Distribute' >> beam.Reshuffle()  # Lets the runner spread shards over workers.
         | 'ConvertShards' >> beam.ParDo(_ConvertShardFn(converter, output_dir, prefix)))
    with _Progress(output_dir, prefix, todo, num_shards, progress_interval, unit, log):
      pipeline.run().wait_until_finish()

  entries = list(pre_failed)
  written = []
  for i, name in enumerate(names):
    part = _read_part(_part_path(output_dir, name))
    if part is None or part.get('fingerprint') != plan[i].fingerprint or not tf.io.gfile.exists(shard_paths[i]):
      raise RuntimeError(f'The pipeline finished but shard {shard_paths[i]} is missing or incomplete. Re-run the '
                         'same command to finish it.')
    shard_entries = [report.ReportEntry(**e) for e in part['entries']]
    entries.extend(shard_entries)
    if i in todo:
      written.extend(shard_entries)
  for path in tf.io.gfile.glob(os.path.join(state, f'{prefix}-*.progress')):
    tf.io.gfile.remove(path)
  report_path = os.path.join(output_dir, f'report_{prefix}.jsonl')
  shards.write_text_atomically(report_path, report.dumps(entries), state)
  return RunResult(entries=entries, report_path=report_path, shard_paths=shard_paths,
                   converted_shards=len(todo), skipped_shards=skipped, seconds=time.monotonic() - started,
                   written_entries=written)
