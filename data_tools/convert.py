r"""Converts raw videos into sharded TFRecord SequenceExamples with an Apache Beam pipeline.

Examples (see docs/data_preparation.md for every dataset kind and for running on Dataflow/Flink/Spark):

  python -m data_tools.convert --source folder --input_dir demo_output/raw_videos/train --split train \
      --output_dir demo_output/tfrecords --short_side 0
  python -m data_tools.convert --source kinetics --annotations kinetics400/annotations/train.csv \
      --video_dir kinetics400/train --split train --output_dir data/kinetics400

Every input gets a line in `<output_dir>/report_<split>.jsonl`; the command exits with status 1 when the fraction
of failed inputs exceeds --max_failure_fraction. A video that decodes to less than its container declares (an
interrupted download) fails with reason `truncated`; --allow_truncated stores its decodable part instead.
Re-running the same command after a kill finishes the missing shards only. Options this script does not know
(`--runner`, `--direct_num_workers`, `--project`, ...) go to Beam.
"""

import argparse
import dataclasses
import difflib
import json
import logging
import os
import sys
from typing import Dict, List, Optional, Sequence, Tuple

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')  # Before TensorFlow loads, also in Beam worker processes.

# pylint: disable=g-import-not-at-top,wrong-import-position
import tensorflow as tf

from data_tools import label_map as label_map_lib
from data_tools import pipeline
from data_tools import report
from data_tools import sequence_example
from data_tools import shards
from data_tools import sources
from data_tools import video_reader
# pylint: enable=g-import-not-at-top,wrong-import-position

SOURCES = ('folder', 'kinetics', 'ucf101', 'hmdb51', 'list')

# Bump when the record layout changes, so re-runs rewrite shards made by an older version.
_FORMAT_VERSION = 1


@dataclasses.dataclass(frozen=True)
class VideoSettings:
  """How videos are stored.

  Attributes:
    fps: stored frame rate; 0 keeps each video's own rate.
    short_side: stored short-side length in pixels; 0 keeps the source size.
    jpeg_quality: JPEG quality of the stored frames, 1-100.
    allow_truncated: store the decodable part of videos that end before their container says they do, instead of
      failing them with reason `truncated`; their report lines say what is missing.
  """
  fps: float = video_reader.DEFAULT_FPS
  short_side: int = video_reader.DEFAULT_SHORT_SIDE
  jpeg_quality: int = sequence_example.DEFAULT_JPEG_QUALITY
  allow_truncated: bool = False

  def __post_init__(self):
    if self.fps < 0 or self.short_side < 0 or not 1 <= self.jpeg_quality <= 100:
      raise ValueError(f'Invalid settings {self}: need fps >= 0, short_side >= 0, 1 <= jpeg_quality <= 100.')


class VideoConverter(pipeline.ItemConverter):
  """Converts one `sources.VideoRecord` into one serialized SequenceExample."""

  def __init__(self, settings: VideoSettings, label_map: Optional[label_map_lib.LabelMap]):
    self._settings = settings
    self._label_map = label_map

  def fingerprint(self) -> str:
    return json.dumps({'version': _FORMAT_VERSION, 'settings': dataclasses.asdict(self._settings),
                       'labels': self._label_map.names if self._label_map else None}, sort_keys=True)

  def describe(self, payload: sources.VideoRecord) -> Dict[str, object]:
    details = {'path': payload.path, 'label': payload.label}
    if payload.start is not None:
      details.update(start=payload.start, end=payload.end)
    return details

  def convert(self, payload: sources.VideoRecord) -> pipeline.Converted:
    record = payload
    indices, names = (), ()
    if record.label is not None:
      if self._label_map is None:
        raise label_map_lib.UnknownLabelError(f'{record.video_id} has label {record.label!r} but no label map.')
      indices, names = (self._label_map.index(record.label),), (record.label,)
    if not record.path:
      raise video_reader.MissingFileError(record.video_id, record.missing_hint or 'no file found.')
    settings = self._settings
    with video_reader.VideoReader(record.path, fps=settings.fps, short_side=settings.short_side,
                                  start=record.start, end=record.end,
                                  allow_truncated=settings.allow_truncated) as reader:
      encoded, shape = [], None
      for frame in reader:
        shape = frame.shape
        encoded.append(sequence_example.encode_jpeg(frame, settings.jpeg_quality))
      info, truncation = reader.info, reader.truncation
    example = sequence_example.make_sequence_example(
        encoded, video_id=record.video_id, height=shape[0], width=shape[1], fps=info.fps,
        source_fps=info.source_fps, label_indices=indices, label_names=names, start=record.start,
        end=record.end)
    details = {'num_frames': len(encoded), 'fps': info.fps, 'source_fps': info.source_fps,
               'height': shape[0], 'width': shape[1], 'rotation': info.rotation}
    if truncation:
      details[report.TRUNCATED] = truncation
    # Deterministic serialisation sorts the feature maps, so equal inputs give byte-identical shards.
    return pipeline.Converted(records=[example.SerializeToString(deterministic=True)], details=details)


def list_inputs(args: argparse.Namespace) -> sources.Listing:
  """Lists the records of the requested source and split."""
  def need(*names):
    missing = [n for n in names if not getattr(args, n)]
    if missing:
      raise ValueError(f'--source {args.source} needs ' + ', '.join(f'--{n}' for n in missing) + '.')
  if args.source == 'folder':
    need('input_dir')
    return sources.list_folder(args.input_dir)
  if args.source == 'kinetics':
    need('annotations', 'video_dir')
    return sources.list_kinetics(args.annotations, args.video_dir)
  if args.source == 'ucf101':
    need('input_dir', 'splits_dir')
    return sources.list_ucf101(args.input_dir, args.splits_dir, args.split, args.split_number)
  if args.source == 'hmdb51':
    need('input_dir', 'splits_dir')
    return sources.list_hmdb51(args.input_dir, args.splits_dir, args.split, args.split_number)
  if not args.input_list and not args.input_dir:
    raise ValueError('--source list needs --input_list (a text file of paths) or --input_dir (a folder).')
  return sources.list_unlabeled(args.input_list or args.input_dir)


# Local jobs whose inputs total less than this many bytes run in-process (unless --direct_running_mode says
# otherwise): decoding them takes about as long as starting worker processes (5-25 s, measured on 2 cores).
_IN_PROCESS_BYTES = 32 * 2**20
_MAX_FILES_TO_MEASURE = 10000


def is_small_job(records: Sequence[sources.VideoRecord]) -> Optional[bool]:
  """Whether local files total less than `_IN_PROCESS_BYTES`; None when that is not cheap to know."""
  if len(records) > _MAX_FILES_TO_MEASURE or any('://' in r.path for r in records):
    return None
  return sum(os.path.getsize(r.path) for r in records if r.path and os.path.isfile(r.path)) < _IN_PROCESS_BYTES


def deduplicate(records: Sequence[sources.VideoRecord]) -> Tuple[List[sources.VideoRecord],
                                                                  List[report.ReportEntry]]:
  """Keeps the first record of each video id; later ones become `duplicate id` report lines."""
  kept, failures, seen = [], [], {}
  for record in records:
    if record.video_id in seen:
      failures.append(report.ReportEntry(
          item_id=record.video_id, status=report.FAILED, reason=report.DUPLICATE_ID,
          message=f'{record.video_id} is listed more than once (first as {seen[record.video_id]}); only the first '
                  'is converted. Remove the duplicate from the inputs.',
          details={'path': record.path, 'label': record.label}))
    else:
      seen[record.video_id] = record.path or record.video_id
      kept.append(record)
  return kept, failures


def build_parser() -> argparse.ArgumentParser:
  parser = argparse.ArgumentParser(
      prog='python -m data_tools.convert', description=__doc__.split('\n\n')[0],
      epilog='Unknown options are passed to Apache Beam, e.g. --direct_num_workers=4, or --runner=DataflowRunner '
             '--project=... --region=... --temp_location=gs://...')
  parser.add_argument('--source', required=True, choices=SOURCES, help='Input layout (see data_tools/sources.py).')
  parser.add_argument('--split', required=True,
                      help='Split name: the shard prefix; for ucf101/hmdb51 also which official split (train/test).')
  parser.add_argument('--output_dir', required=True, help='Folder for shards, report and label map (or gs://...).')
  parser.add_argument('--input_dir', help='folder/ucf101/hmdb51: dataset folder; list: a folder of videos.')
  parser.add_argument('--input_list', help='list: a text file with one video path per line.')
  parser.add_argument('--annotations', help='kinetics: the annotation CSV of the split.')
  parser.add_argument('--video_dir', help='kinetics: folder of downloaded clips (any sub-folder layout).')
  parser.add_argument('--splits_dir', help='ucf101: ucfTrainTestlist folder; hmdb51: split files folder.')
  parser.add_argument('--split_number', type=int, default=1, help='ucf101/hmdb51: official split 1, 2 or 3.')
  parser.add_argument('--label_map', help='Label map file shared by all splits (default <output_dir>/label_map.txt); '
                      'created from this split\'s dataset classes if absent, reused as is otherwise.')
  parser.add_argument('--num_shards', type=int, default=0,
                      help='Number of output shards; 0 picks ~100 videos per shard (at least 16 shards, one per video '
                      'below that).')
  parser.add_argument('--fps', type=float, default=video_reader.DEFAULT_FPS,
                      help='Stored frame rate; 0 keeps each video\'s own rate.')
  parser.add_argument('--short_side', type=int, default=video_reader.DEFAULT_SHORT_SIDE,
                      help='Stored short-side length in pixels; 0 keeps the source size.')
  parser.add_argument('--jpeg_quality', type=int, default=sequence_example.DEFAULT_JPEG_QUALITY,
                      help='JPEG quality of stored frames (1-100).')
  parser.add_argument('--allow_truncated', action='store_true',
                      help='Store the decodable part of videos that end before their container says they do '
                      '(interrupted downloads) instead of failing them as "truncated"; the report marks them.')
  parser.add_argument('--max_failure_fraction', type=float, default=0.01,
                      help='Exit with status 1 when more than this fraction of inputs failed (report lists them).')
  parser.add_argument('--progress_interval', type=float, default=10.0,
                      help='Seconds between progress lines; 0 disables them.')
  return parser


def _log(message: str) -> None:
  print(message, file=sys.stderr, flush=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
  """Runs the conversion; returns the process exit status (0 ok, 1 too many failed inputs, 2 bad arguments)."""
  logging.getLogger('apache_beam').setLevel(logging.WARNING)
  # Unknown options are reported below, with suggestions, instead of Beam's "discarding" warning.
  logging.getLogger('apache_beam.options.pipeline_options').setLevel(logging.ERROR)
  # Worker processes forward their start-up warnings through this logger; real errors still show.
  logging.getLogger('apache_beam.runners.portability.local_job_service').setLevel(logging.ERROR)
  parser = build_parser()
  args, beam_args = parser.parse_known_args(argv)
  try:
    # Imports the --runner's module first: its options (--dask_client_address, ...) are defined there.
    beam_args = pipeline.resolve_runner(beam_args)
    unknown, beam_flags = pipeline.unknown_options(beam_args)
  except ValueError as e:
    _log(f'[{args.split}] ERROR: {e}')
    return 2
  if unknown:
    ours = [flag for action in parser._actions for flag in action.option_strings]  # pylint: disable=protected-access
    hints = [f'{flag} (did you mean {close[0]}?)' if (close := difflib.get_close_matches(flag, ours + beam_flags, 1))
             else flag for flag in unknown]
    _log(f'[{args.split}] ERROR: unknown option(s): {", ".join(hints)}. They are neither options of this command '
         'nor Apache Beam options.')
    return 2
  try:
    return _convert(args, beam_args)
  except (ValueError, FileNotFoundError) as e:
    _log(f'[{args.split}] ERROR: {e}')
    return 2


def _convert(args: argparse.Namespace, beam_args: List[str]) -> int:
  settings = VideoSettings(fps=args.fps, short_side=args.short_side, jpeg_quality=args.jpeg_quality,
                           allow_truncated=args.allow_truncated)
  listing = list_inputs(args)
  for note in listing.notes:
    _log(f'[{args.split}] note: {note}')
  records, duplicates = deduplicate(listing.records)
  labels = None
  if any(r.label is not None for r in records):
    map_path = args.label_map or os.path.join(args.output_dir, 'label_map.txt')
    existed = label_map_lib.exists(map_path)
    labels = label_map_lib.load_or_create(map_path, listing.class_names, sort=not listing.official_order)
    _log(f'[{args.split}] label map {map_path}: {len(labels)} classes '
         f'({"reused" if existed else "created"}).')
  num_shards = args.num_shards or shards.auto_num_shards(len(records))
  items = [pipeline.WorkItem(r.video_id, r) for r in records]
  result = pipeline.run(items, VideoConverter(settings, labels), output_dir=args.output_dir, prefix=args.split,
                        num_shards=num_shards, pipeline_args=beam_args, pre_failed=duplicates,
                        progress_interval=args.progress_interval, in_process=is_small_job(records), unit='videos',
                        log=_log)
  converted = [e for e in result.entries if e.status == report.CONVERTED]
  _log(f'[{args.split}] {report.summary_line(result.entries)}.')
  kept_truncated = sum(report.TRUNCATED in e.details for e in converted)
  if kept_truncated:
    _log(f'[{args.split}] {kept_truncated} of the converted inputs are truncated and stored as far as they decode '
         '(--allow_truncated); their report lines say what is missing.')
  if result.converted_shards:
    # This run's work only: a resumed run's skipped shards were stored by an earlier run.
    written_frames = sum(e.details.get('num_frames', 0) for e in result.written_entries
                         if e.status == report.CONVERTED)
    earlier = (f'; {result.skipped_shards} shards were already complete from an earlier run'
               if result.skipped_shards else '')
    _log(f'[{args.split}] this run: {result.converted_shards} shards written in {result.seconds:.1f} s, '
         f'{written_frames} frames stored{earlier}.')
  _log(f'[{args.split}] shards: {os.path.join(args.output_dir, f"{args.split}-*-of-{num_shards:05d}.tfrecord")}')
  _log(f'[{args.split}] report: {result.report_path}')
  if result.failure_fraction > args.max_failure_fraction:
    _log(f'[{args.split}] ERROR: {result.num_failed} of {len(result.entries)} inputs failed '
         f'({100 * result.failure_fraction:.1f}% > --max_failure_fraction={args.max_failure_fraction}). '
         f'See {result.report_path}: fix or remove the failed inputs, or raise --max_failure_fraction.')
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main())
