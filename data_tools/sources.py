"""Lists the videos of a dataset split as `VideoRecord`s, one function per dataset layout.

Each lister turns a dataset's own description (folders, annotation CSVs, official split files, plain lists) into
records with a stable video id, a path, a label name (or None) and an optional time span, plus the dataset's full
class list for a new label map. Listing never opens a video: a record whose file is absent keeps `path=''` and a
hint saying what was looked for, and the converter reports it as `missing file`, so nothing drops out silently.

Layouts:
  folder     <input_dir>/<class_name>/<video>            (e.g. the demo dataset's <root>/<split>/<class>/...)
  kinetics   Kinetics-400/600/700 CSV `label,youtube_id,time_start,time_end,split` + a folder of downloads named
             `<youtube_id>_<start:06d>_<end:06d>.<ext>` (already cut) or `<youtube_id>.<ext>` (cut here), at any depth
  ucf101     UCF-101/<class>/<video>.avi + ucfTrainTestlist/{classInd,trainlist0N,testlist0N}.txt
  hmdb51     hmdb51/<class>/<video>.avi + split files `<class>_test_split<N>.txt` (`<video> <tag>`, 1 train, 2 test)
  list       a text file of video paths (one a line, relative to the file's folder) or a folder of videos
"""

import csv
import dataclasses
import io
import os
import posixpath
import re
from typing import Dict, Iterator, List, Optional, Tuple

import tensorflow as tf

# Extensions treated as videos when scanning folders (compared lower-case).
VIDEO_EXTENSIONS = ('.mp4', '.m4v', '.mov', '.mkv', '.webm', '.avi', '.mpg', '.mpeg', '.flv', '.3gp', '.ogv',
                    '.wmv', '.ts', '.gif')


@dataclasses.dataclass(frozen=True)
class VideoRecord:
  """One input video.

  Attributes:
    video_id: stable id, unique within a split (a relative path, or `<youtube_id>_<start>_<end>` for Kinetics).
    path: the file to read, or '' when no file was found.
    label: class name, or None for unlabeled videos.
    start: optional span start in seconds (inclusive), when the clip must be cut from a longer video.
    end: optional span end in seconds (exclusive).
    missing_hint: when `path` is '', what was looked for (goes into the `missing file` report line).
  """
  video_id: str
  path: str
  label: Optional[str]
  start: Optional[float] = None
  end: Optional[float] = None
  missing_hint: str = ''


@dataclasses.dataclass
class Listing:
  """The records of one split and what is needed to build a label map.

  Attributes:
    records: the videos of the split, in the dataset's listing order.
    class_names: every class of the dataset (not only those in this split), or None for unlabeled data.
    official_order: whether `class_names` is an official order to keep instead of sorting (UCF-101 classInd).
    notes: warnings for the user (ignored files, ambiguous matches).
  """
  records: List[VideoRecord]
  class_names: Optional[List[str]]
  official_order: bool = False
  notes: List[str] = dataclasses.field(default_factory=list)


def is_video_file(name: str) -> bool:
  return os.path.splitext(name)[1].lower() in VIDEO_EXTENSIONS


def _is_remote(path: str) -> bool:
  return '://' in path


def _join(root: str, *parts: str) -> str:
  return posixpath.join(root, *parts) if _is_remote(root) else os.path.join(root, *parts)


def _is_dir(path: str) -> bool:
  return tf.io.gfile.isdir(path) if _is_remote(path) else os.path.isdir(path)


def _walk_files(root: str) -> Iterator[Tuple[str, str]]:
  """Yields (relative path with '/' separators, full path) of every non-hidden file under `root`, sorted."""
  walker = tf.io.gfile.walk(root) if _is_remote(root) else os.walk(root)
  found = []
  for directory, subdirs, files in walker:
    subdirs[:] = [d for d in subdirs if not d.startswith('.')]
    for name in files:
      if name.startswith('.'):
        continue
      full = _join(directory, name)
      relative = os.path.relpath(full, root) if not _is_remote(root) else full[len(root.rstrip('/')) + 1:]
      found.append((relative.replace(os.sep, '/'), full))
  return iter(sorted(found))


def _read_text(path: str) -> str:
  if not tf.io.gfile.exists(path):
    raise FileNotFoundError(f'{path} does not exist.')
  with tf.io.gfile.GFile(path, 'r') as f:
    return f.read()


def _require_dir(path: str, what: str) -> None:
  if not _is_dir(path):
    raise FileNotFoundError(f'{what} {path} is not a folder.')


def list_folder(input_dir: str) -> Listing:
  """Lists `<input_dir>/<class_name>/**/<video>`; the class is the first folder level.

  Raises:
    FileNotFoundError: when `input_dir` is not a folder.
    ValueError: when it has no class sub-folders.
  """
  _require_dir(input_dir, 'Input folder')
  records, ignored, loose = [], [], []
  classes = set()
  for relative, full in _walk_files(input_dir):
    if '/' not in relative:
      loose.append(relative)
      continue
    if not is_video_file(relative):
      ignored.append(relative)
      continue
    label = relative.split('/', 1)[0]
    classes.add(label)
    records.append(VideoRecord(video_id=relative, path=full, label=label))
  if not classes:
    raise ValueError(f'{input_dir} has no class sub-folders with videos; expected <input_dir>/<class>/<video>. '
                     'For videos without labels use --source list.')
  notes = []
  if loose:
    notes.append(f'{len(loose)} files directly in {input_dir} have no class folder and were skipped: '
                 f'{_first(loose)}')
  if ignored:
    notes.append(f'{len(ignored)} files without a video extension were skipped: {_first(ignored)}')
  return Listing(records=records, class_names=sorted(classes), notes=notes)


def _first(items: List[str], n: int = 5) -> str:
  return ', '.join(items[:n]) + (', ...' if len(items) > n else '')


def kinetics_clip_id(youtube_id: str, start: float, end: float) -> str:
  """The usual Kinetics clip name `<youtube_id>_<start:06d>_<end:06d>` (seconds)."""
  return f'{youtube_id}_{int(start):06d}_{int(end):06d}'


def _index_by_stem(video_dir: str) -> Tuple[Dict[str, List[str]], List[str]]:
  """Maps file stems under `video_dir` to their paths (preferring VIDEO_EXTENSIONS order), and lists duplicates."""
  index: Dict[str, List[str]] = {}
  for relative, full in _walk_files(video_dir):
    if is_video_file(relative):
      stem = os.path.splitext(relative.rsplit('/', 1)[-1])[0]
      index.setdefault(stem, []).append(full)
  rank = {ext: i for i, ext in enumerate(VIDEO_EXTENSIONS)}
  duplicates = []
  for stem, paths in index.items():
    if len(paths) > 1:
      paths.sort(key=lambda p: (rank[os.path.splitext(p)[1].lower()], p))
      duplicates.append(stem)
  return index, sorted(duplicates)


def list_kinetics(annotations: str, video_dir: str) -> Listing:
  """Lists the clips of a Kinetics annotation CSV matched to downloaded files.

  A row matches `<youtube_id>_<start:06d>_<end:06d>.<ext>` (an already cut clip, read whole) or else
  `<youtube_id>.<ext>` (the full video, cut to [time_start, time_end) while reading), anywhere under `video_dir`.
  CSVs without a `label` column (Kinetics-600 test) give unlabeled records.

  Args:
    annotations: the CSV of one split, e.g. `kinetics400/train.csv`.
    video_dir: folder holding the downloaded videos of that split (any sub-folder layout).

  Returns:
    The listing; `class_names` are the sorted labels of the CSV.

  Raises:
    FileNotFoundError: when the CSV or the folder does not exist.
    ValueError: when the CSV lacks the youtube_id/time_start/time_end columns or has a malformed row.
  """
  _require_dir(video_dir, 'Video folder')
  rows = list(csv.DictReader(io.StringIO(_read_text(annotations))))
  required = {'youtube_id', 'time_start', 'time_end'}
  columns = set(rows[0].keys()) if rows else set()
  if not rows or not required <= columns:
    raise ValueError(f'{annotations} is not a Kinetics annotation CSV: expected a header with columns '
                     f'label,youtube_id,time_start,time_end,split; found {sorted(columns) or "no rows"}.')
  index, duplicates = _index_by_stem(video_dir)
  records, labels = [], set()
  for line_number, row in enumerate(rows, start=2):
    youtube_id = (row['youtube_id'] or '').strip()
    try:
      start, end = float(row['time_start']), float(row['time_end'])
    except (TypeError, ValueError):
      raise ValueError(f'{annotations}:{line_number}: time_start/time_end must be numbers, got '
                       f'{row["time_start"]!r}, {row["time_end"]!r}.') from None
    if not youtube_id:
      raise ValueError(f'{annotations}:{line_number}: empty youtube_id.')
    label = (row.get('label') or '').strip() or None
    if label:
      labels.add(label)
    clip_id = kinetics_clip_id(youtube_id, start, end)
    if clip_id in index:
      records.append(VideoRecord(video_id=clip_id, path=index[clip_id][0], label=label))
    elif youtube_id in index:
      records.append(VideoRecord(video_id=clip_id, path=index[youtube_id][0], label=label, start=start, end=end))
    else:
      records.append(VideoRecord(
          video_id=clip_id, path='', label=label, start=start, end=end,
          missing_hint=f'no download found for {clip_id}: looked for {clip_id}.<ext> and {youtube_id}.<ext> '
                       f'under {video_dir}. Download it, or leave it reported as missing.'))
  notes = []
  if duplicates:
    notes.append(f'{len(duplicates)} clips exist in several files under {video_dir}; using the first by '
                 f'extension preference {VIDEO_EXTENSIONS[:4]}: {_first(duplicates)}')
  return Listing(records=records, class_names=sorted(labels) or None, notes=notes)


class _FileFinder:
  """Resolves dataset-relative paths, tolerating case differences (UCF-101's HandStandPushups vs Handstand...)."""

  def __init__(self, root: str):
    self._root = root
    self._by_relative: Dict[str, str] = {}
    self._by_name: Dict[str, List[str]] = {}
    for relative, full in _walk_files(root):
      self._by_relative[relative.lower()] = full
      self._by_name.setdefault(relative.rsplit('/', 1)[-1].lower(), []).append(full)

  def find(self, relative: str) -> str:
    """Returns the full path of `relative` under the root, or '' when absent or ambiguous."""
    full = self._by_relative.get(relative.lower())
    if full:
      return full
    candidates = self._by_name.get(relative.rsplit('/', 1)[-1].lower(), [])
    return candidates[0] if len(candidates) == 1 else ''


def _check_split(dataset: str, split: str, split_number: int) -> None:
  if split not in ('train', 'test'):
    raise ValueError(f'{dataset} has official "train" and "test" splits, got --split={split!r}.')
  if split_number not in (1, 2, 3):
    raise ValueError(f'{dataset} has three official splits (1, 2, 3), got --split_number={split_number}.')


def list_ucf101(input_dir: str, splits_dir: str, split: str, split_number: int) -> Listing:
  """Lists UCF-101 videos of an official split.

  Args:
    input_dir: the UCF-101 folder with one sub-folder of .avi files per class.
    splits_dir: the `ucfTrainTestlist` folder with classInd.txt, trainlist0N.txt and testlist0N.txt.
    split: 'train' or 'test'.
    split_number: 1, 2 or 3.

  Returns:
    The listing; `class_names` follow classInd.txt (official indices minus one).

  Raises:
    FileNotFoundError: when a folder or split file is missing.
    ValueError: on a bad split or a malformed split file.
  """
  _check_split('UCF-101', split, split_number)
  _require_dir(input_dir, 'UCF-101 folder')
  class_file = _join(splits_dir, 'classInd.txt')
  classes = []
  for line_number, line in enumerate(_read_text(class_file).splitlines(), start=1):
    if line.strip():
      parts = line.split()
      if len(parts) != 2 or not parts[0].isdigit():
        raise ValueError(f'{class_file}:{line_number}: expected "<index> <ClassName>", got {line!r}.')
      classes.append((int(parts[0]), parts[1]))
  classes.sort()
  if [i for i, _ in classes] != list(range(1, len(classes) + 1)):
    raise ValueError(f'{class_file}: class indices must run 1..N without gaps.')
  class_names = [name for _, name in classes]
  by_lower = {name.lower(): name for name in class_names}
  list_file = _join(splits_dir, f'{split}list0{split_number}.txt')
  finder = _FileFinder(input_dir)
  records = []
  for line in _read_text(list_file).splitlines():
    if not line.strip():
      continue
    relative = line.split()[0].replace('\\', '/')
    folder = relative.split('/', 1)[0]
    label = by_lower.get(folder.lower(), folder)
    path = finder.find(relative)
    records.append(VideoRecord(video_id=relative, path=path, label=label,
                               missing_hint='' if path else f'{relative} not found under {input_dir}.'))
  return Listing(records=records, class_names=class_names, official_order=True)


_HMDB_SPLIT_FILE = re.compile(r'^(?P<label>.+)_test_split(?P<number>[123])\.txt$')


def list_hmdb51(input_dir: str, splits_dir: str, split: str, split_number: int) -> Listing:
  """Lists HMDB-51 videos of an official split.

  Args:
    input_dir: the HMDB-51 folder with one sub-folder of .avi files per class (the unpacked RAR archives).
    splits_dir: the folder of `<class>_test_split<N>.txt` files (testTrainMulti_7030_splits).
    split: 'train' (tag 1) or 'test' (tag 2); videos tagged 0 belong to neither and are not listed.
    split_number: 1, 2 or 3.

  Returns:
    The listing; `class_names` are the sorted class names of the split files.

  Raises:
    FileNotFoundError: when a folder is missing or holds no split files.
    ValueError: on a bad split or a malformed split file.
  """
  _check_split('HMDB-51', split, split_number)
  _require_dir(input_dir, 'HMDB-51 folder')
  _require_dir(splits_dir, 'HMDB-51 split folder')
  wanted_tag = '1' if split == 'train' else '2'
  split_files = []
  for name in sorted(tf.io.gfile.listdir(splits_dir)):
    match = _HMDB_SPLIT_FILE.match(name)
    if match and int(match.group('number')) == split_number:
      split_files.append((match.group('label'), _join(splits_dir, name)))
  if not split_files:
    raise FileNotFoundError(f'{splits_dir} has no <class>_test_split{split_number}.txt files.')
  finder = _FileFinder(input_dir)
  records = []
  for label, split_file in split_files:
    for line_number, line in enumerate(_read_text(split_file).splitlines(), start=1):
      if not line.strip():
        continue
      parts = line.split()
      if len(parts) != 2 or parts[1] not in ('0', '1', '2'):
        raise ValueError(f'{split_file}:{line_number}: expected "<video> <0|1|2>", got {line!r}.')
      if parts[1] != wanted_tag:
        continue
      relative = f'{label}/{parts[0]}'
      path = finder.find(relative)
      records.append(VideoRecord(video_id=relative, path=path, label=label,
                                 missing_hint='' if path else f'{relative} not found under {input_dir}.'))
  return Listing(records=records, class_names=sorted(label for label, _ in split_files))


def list_unlabeled(input_path: str) -> Listing:
  """Lists unlabeled videos from a folder (recursively) or a text file of paths.

  In a text file, each non-blank line not starting with '#' is a path; relative paths are relative to the text
  file's folder, and the line itself is the video id.

  Raises:
    FileNotFoundError: when `input_path` does not exist.
  """
  if _is_dir(input_path):
    records = [VideoRecord(video_id=relative, path=full, label=None)
               for relative, full in _walk_files(input_path) if is_video_file(relative)]
    if not records:
      raise ValueError(f'{input_path} holds no files with a video extension {VIDEO_EXTENSIONS}.')
    return Listing(records=records, class_names=None)
  base = os.path.dirname(input_path)
  records = []
  for line in _read_text(input_path).splitlines():
    line = line.strip()
    if not line or line.startswith('#'):
      continue
    absolute = os.path.isabs(line) or _is_remote(line)
    records.append(VideoRecord(video_id=line, path=line if absolute else _join(base, line), label=None))
  return Listing(records=records, class_names=None)
