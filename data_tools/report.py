"""Per-input conversion report: why every input was converted or not.

A conversion must never lose a video silently, so every input gets exactly one report line: `converted`, or
`failed` with one of the reasons below. The report is JSON lines (one object per input, sorted by item id) so it
can be grepped, loaded with pandas, or diffed between runs. Failure reasons are carried by `ConversionError`, the
base class of every expected per-item failure (bad video, unknown label, ...); the pipeline catches it per item so
one bad input never stops a run.
"""

import collections
import dataclasses
import json
from typing import Any, Dict, Iterable, List, Mapping, Optional

# Status values.
CONVERTED = 'converted'
FAILED = 'failed'

# Failure reasons. Kept as plain strings so report lines read naturally and stay stable across versions.
MISSING_FILE = 'missing file'
UNREADABLE = 'unreadable'  # Not a media file, no readable index, or corrupt data in the middle of the stream.
TRUNCATED = 'truncated'  # Decodes, but ends before the duration or frame count its container declares.
NO_VIDEO_STREAM = 'no video stream'
ZERO_FRAMES = 'zero frames'
UNKNOWN_LABEL = 'unknown label'
OUTSIDE_TIME_SPAN = 'outside time span'
DUPLICATE_ID = 'duplicate id'
UNEXPECTED_ERROR = 'unexpected error'  # A bug or an environment problem; the message holds the exception.

REASONS = (MISSING_FILE, UNREADABLE, TRUNCATED, NO_VIDEO_STREAM, ZERO_FRAMES, UNKNOWN_LABEL, OUTSIDE_TIME_SPAN,
           DUPLICATE_ID, UNEXPECTED_ERROR)


class ConversionError(Exception):
  """An expected failure to convert one input; `reason` is one of `REASONS`."""

  reason = UNEXPECTED_ERROR

  def __init__(self, message: str, reason: Optional[str] = None):
    super().__init__(message)
    if reason is not None:
      self.reason = reason


@dataclasses.dataclass(frozen=True)
class ReportEntry:
  """One report line.

  Attributes:
    item_id: the stable id of the input (a video id, or a keyframe id for AVA).
    status: `CONVERTED` or `FAILED`.
    reason: a failure reason from `REASONS`; empty when converted.
    message: a human-readable explanation naming the file and what to do; empty when converted.
    shard: the output shard the item was assigned to, or -1 when it never reached one (e.g. a duplicate id).
    details: free-form facts about the input or output (path, label, frame count, fps, ...).
  """
  item_id: str
  status: str
  reason: str = ''
  message: str = ''
  shard: int = -1
  details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

  def to_json(self) -> str:
    return json.dumps(dataclasses.asdict(self), sort_keys=True, default=_json_default)

  @classmethod
  def from_json(cls, line: str) -> 'ReportEntry':
    return cls(**json.loads(line))


def _json_default(value: Any) -> Any:
  # NumPy scalars sneak into details (frame counts, fps); store them as plain numbers.
  if hasattr(value, 'item'):
    return value.item()
  raise TypeError(f'Cannot store {type(value).__name__} in a report line: {value!r}')


def failed(item_id: str, error: Exception, shard: int = -1,
           details: Optional[Mapping[str, Any]] = None) -> ReportEntry:
  """Makes the report line of an item that raised `error`."""
  if isinstance(error, ConversionError):
    reason, message = error.reason, str(error)
  else:
    reason, message = UNEXPECTED_ERROR, f'{type(error).__name__}: {error}'
  return ReportEntry(item_id=item_id, status=FAILED, reason=reason, message=message, shard=shard,
                     details=dict(details or {}))


def dumps(entries: Iterable[ReportEntry]) -> str:
  """Serialises entries as JSON lines, sorted by item id so reruns give identical reports."""
  ordered = sorted(entries, key=lambda e: (e.item_id, e.status, e.reason))
  return ''.join(e.to_json() + '\n' for e in ordered)


def loads(text: str) -> List[ReportEntry]:
  """Parses JSON lines written by `dumps`."""
  return [ReportEntry.from_json(line) for line in text.splitlines() if line.strip()]


def count_by_reason(entries: Iterable[ReportEntry]) -> Dict[str, int]:
  """Returns {'converted': n, '<reason>': n, ...} for a summary."""
  counts = collections.Counter(
      e.status if e.status == CONVERTED else e.reason for e in entries)
  return dict(sorted(counts.items()))


def summary_line(entries: List[ReportEntry]) -> str:
  """One line like '98 of 100 inputs converted; 2 failed (1 missing file, 1 zero frames)'."""
  counts = count_by_reason(entries)
  converted = counts.pop(CONVERTED, 0)
  failures = sum(counts.values())
  line = f'{converted} of {len(entries)} inputs converted; {failures} failed'
  if failures:
    line += ' (' + ', '.join(f'{n} {reason}' for reason, n in counts.items()) + ')'
  return line
