"""Decodes a video file into upright RGB frames at a chosen frame rate and size, with PyAV only.

Used by the TFRecord converter and by feature extraction, so it imports neither Beam nor TensorFlow (TensorFlow is
imported lazily, only to open remote `gs://`-style paths). PyAV bundles FFmpeg's libraries, so no `ffmpeg` binary
is needed on PATH; it decodes mp4/mov/mkv (h264, hevc, av1), avi (mpeg4, mjpeg), webm (vp8, vp9) and animated gif.

Why each step is done the way it is:
* Rotation: phones store portrait video as landscape frames plus a display matrix; training on sideways frames
  would silently change the data, so frames are rotated upright (display matrix first, legacy `rotate` tag second).
* Frame rate: frames are resampled by presentation timestamp (sample-and-hold: output time t shows the last source
  frame whose timestamp is <= t), which is exact for variable-frame-rate files, unlike keeping every n-th frame.
* Size: frames are resized so the short side has a fixed length, keeping the aspect ratio, during the YUV->RGB
  conversion (one swscale pass, area filter when shrinking).
* Time spans: `[start, end)` in seconds from the first frame of the stream; the reader seeks to the keyframe before
  `start` instead of decoding from the beginning, which matters for minute-long videos cut to 10-second clips.
* Completeness: a file cut short (an interrupted download) often decodes without any error: an mp4 with its index
  at the front stops at the last complete sample, an AVI at the end of its data. So once decoding ends, the decoded
  duration (and, from the start, the frame count) is compared with what the container declares, and a shortfall
  raises `TruncatedVideoError`. Decoding uses slice threads, not frame threads: with frame threading FFmpeg drops
  the error of a broken last packet, and the stream just ends. A decode error followed by more data is corruption
  in the middle of the stream and raises `UnreadableVideoError`; one at the very end of the data is truncation.

Failures raise `VideoReadError` subclasses whose `reason` matches the conversion report and whose message names the
file and what to do.
"""

import dataclasses
import math
import os
from typing import Any, Iterator, List, Optional, Tuple

import av
import av.video.reformatter
import numpy as np

from data_tools import report

DEFAULT_FPS = 25.0
DEFAULT_SHORT_SIDE = 256

# Timestamps closer than this (seconds) are treated as equal: far below any frame interval, far above rounding
# error of `pts * time_base` in floating point.
_TIME_EPSILON = 1e-4
_BITEXACT = av.video.reformatter.Interpolation.BITEXACT | av.video.reformatter.Interpolation.ACCURATE_RND

# A decoded stream may end this much before the declared end without counting as truncated: edit lists, audio
# that outlasts the video in a container-level duration, and rounding of the declared duration account for a frame
# or two; an interrupted download loses far more. The larger of the two bounds applies.
_TRUNCATION_TOLERANCE_FRAMES = 3
_TRUNCATION_TOLERANCE_FRACTION = 0.02


class VideoReadError(report.ConversionError):
  """A video could not be read; `reason` says why (see `data_tools.report`)."""

  reason = report.UNREADABLE

  def __init__(self, path: str, message: str):
    super().__init__(f'{path}: {message}')
    self.path = path


class MissingFileError(VideoReadError):
  reason = report.MISSING_FILE


class UnreadableVideoError(VideoReadError):
  reason = report.UNREADABLE


class NoVideoStreamError(VideoReadError):
  reason = report.NO_VIDEO_STREAM


class ZeroFramesError(VideoReadError):
  reason = report.ZERO_FRAMES


class OutsideTimeSpanError(VideoReadError):
  reason = report.OUTSIDE_TIME_SPAN


class TruncatedVideoError(VideoReadError):
  reason = report.TRUNCATED


@dataclasses.dataclass(frozen=True)
class _DecodeFailure:
  """A decode (or demux) error that ended decoding.

  Attributes:
    error: the FFmpeg error.
    after: seconds of the last frame decoded before it, or None when none was.
    data_follows: whether the stream has more packets after the broken one (corruption in the middle, not a
      file that ends inside a frame).
  """
  error: Exception
  after: Optional[float]
  data_follows: bool

  def where(self) -> str:
    return 'at the start' if self.after is None else f'after {self.after:.2f} s'


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Facts about a source video and the frames the reader produces from it.

  Attributes:
    path: the file read.
    codec: FFmpeg codec name of the video stream, e.g. 'h264'.
    source_fps: average frame rate of the source stream (0.0 when the file does not say).
    duration: duration of the video stream in seconds as the container declares it, or None when it does not say.
    num_frames: number of frames the container declares for the video stream, or 0 when it does not say.
    width: upright source width in pixels (after rotation).
    height: upright source height in pixels (after rotation).
    rotation: degrees counterclockwise the decoded frames were rotated to be upright (0, 90, 180 or 270).
    fps: frame rate of the produced frames (the target rate, or `source_fps` when keeping the source rate).
  """
  path: str
  codec: str
  source_fps: float
  duration: Optional[float]
  num_frames: int
  width: int
  height: int
  rotation: int
  fps: float


def output_size(width: int, height: int, short_side: int) -> Tuple[int, int]:
  """Returns (width, height) scaled so that min(width, height) == short_side; 0 keeps the size.

  The long side is rounded to the nearest pixel, so 320x240 -> 341x256 at short_side 256.
  """
  if not short_side:
    return width, height
  if width <= height:
    return short_side, max(1, int(math.floor(height * short_side / width + 0.5)))
  return max(1, int(math.floor(width * short_side / height + 0.5))), short_side


def _rotation_quarter_turns(frame: av.VideoFrame, stream: av.video.stream.VideoStream) -> int:
  """Counterclockwise quarter turns that make `frame` upright."""
  degrees = frame.rotation  # From the display matrix side data; counterclockwise, in [-180, 180].
  if not degrees:
    # Legacy files carry a clockwise `rotate` tag instead of a display matrix.
    tag = stream.metadata.get('rotate') or frame.metadata.get('rotate')
    if tag:
      try:
        degrees = -float(tag)
      except ValueError:
        degrees = 0
  return int(round(degrees / 90.0)) % 4


def _open_source(path: str) -> Any:
  """Returns what `av.open` should open: the path itself, or a file object for remote (`scheme://`) paths."""
  if '://' not in path:
    if not os.path.isfile(path):
      what = 'is a directory, not a video file' if os.path.isdir(path) else 'file not found'
      raise MissingFileError(path, f'{what}. Check the path and that the download finished.')
    return path
  import tensorflow as tf  # pylint: disable=g-import-not-at-top  # Only remote paths need TensorFlow's gfile.
  if not tf.io.gfile.exists(path):
    raise MissingFileError(path, 'file not found. Check the path and that the upload finished.')
  return tf.io.gfile.GFile(path, 'rb')


class VideoReader:
  """Iterates over the upright, resampled, resized RGB frames of one video.

  Use as a context manager; `info` is available once opened and `timestamps` (seconds of each produced frame)
  fills in while iterating:

    with VideoReader('a.mp4', fps=25, short_side=256, start=2.0, end=4.0) as reader:
      for frame in reader:  # [H, W, 3] uint8
        ...

  Opening decodes the first frame (to learn the rotation), so file-level errors surface at `open()`. Errors found
  later while decoding (corrupt data, a truncated file, a span past the end of the video) surface during
  iteration, after the last frame.
  """

  def __init__(self, path: str, fps: Optional[float] = DEFAULT_FPS, short_side: Optional[int] = DEFAULT_SHORT_SIDE,
               start: Optional[float] = None, end: Optional[float] = None, allow_truncated: bool = False):
    """Configures the reader.

    Args:
      path: a local video file, or a remote path TensorFlow's gfile can read (`gs://...`).
      fps: output frame rate; 0 or None keeps the source frames and their timestamps.
      short_side: output length of the shorter side in pixels, keeping the aspect ratio; 0 or None keeps the size.
      start: optional start of the span to read, in seconds from the first frame (inclusive).
      end: optional end of the span to read, in seconds (exclusive).
      allow_truncated: keep the frames of a file that ends before the container says it does (`truncation` then
        says what is missing) instead of raising `TruncatedVideoError`. Corruption in the middle of a stream
        still raises.

    Raises:
      ValueError: on a negative `fps` or `short_side`.
    """
    if fps is not None and fps < 0:
      raise ValueError(f'fps must be >= 0 (0 keeps the source rate), got {fps}.')
    if short_side is not None and short_side < 0:
      raise ValueError(f'short_side must be >= 0 (0 keeps the source size), got {short_side}.')
    self.path = path
    self._fps = float(fps or 0.0)
    self._short_side = int(short_side or 0)
    self._start = start
    self._end = end
    self._allow_truncated = allow_truncated
    self._container = None
    self._file = None  # File object of a remote path, closed with the container.
    self._stream = None
    self._frames = None
    self._first = None
    self._turns = 0
    self._size = None  # Output (width, height) before rotation.
    self._iterated = False
    self._video_end = 0.0  # Seconds; known once decoding reached the end of the span or of the stream.
    self._stopped_at_end = False  # Decoding stopped at `end`, before the end of the stream.
    self._from_start = True  # Decoding started at the first frame (no seek), so frame counts are comparable.
    self._decoded_frames = 0
    self._failure: Optional[_DecodeFailure] = None
    self.info: Optional[VideoInfo] = None
    self.timestamps: List[float] = []
    # Set when `allow_truncated` kept a truncated file: what was decoded of what the container declares.
    self.truncation: Optional[str] = None

  def __enter__(self) -> 'VideoReader':
    self.open()
    return self

  def __exit__(self, *unused_exc) -> None:
    self.close()

  def close(self) -> None:
    if self._container is not None:
      self._container.close()
      self._container = None
    if self._file is not None:
      self._file.close()
      self._file = None

  def open(self) -> 'VideoReader':
    """Opens the file, checks it has a decodable video stream and fills `info`.

    Returns:
      self.

    Raises:
      VideoReadError: a subclass saying why the file cannot be read.
    """
    start, end = self._start, self._end
    if (start is not None and start < 0) or (end is not None and end <= (start or 0.0)):
      raise OutsideTimeSpanError(self.path, f'the requested time span [{start}, {end}) s is empty or negative. '
                                 'Check time_start/time_end in the annotations.')
    try:
      self._open_and_peek()
    except BaseException:
      self.close()  # A context manager whose __enter__ raises never reaches __exit__.
      raise
    return self

  def _open_and_peek(self) -> None:
    """Opens the container, decodes the first frame of the span and fills `info`."""
    start = self._start
    self._open_container()
    if start:
      self._frames = self._decode(seek_to=start)
      self._first = next(self._frames, None)
      if self._first is None or self._first[1] > start + _TIME_EPSILON:
        # Seeking found nothing or landed after `start` (broken index): decode from the beginning instead.
        self.close()
        self._open_container()
        self._frames = self._decode(seek_to=None)
        self._first = next(self._frames, None)
    else:
      self._frames = self._decode(seek_to=None)
      self._first = next(self._frames, None)
    if self._first is None:
      if self._failure is not None:
        raise UnreadableVideoError(self.path, f'corrupt data while decoding at the start ({self._failure.error}). '
                                   'Re-download or re-encode the file.') from self._failure.error
      raise ZeroFramesError(self.path, 'the video stream decodes to zero frames. The file is probably empty or '
                            'truncated: re-download or re-encode it.')
    frame = self._first[0]
    self._turns = _rotation_quarter_turns(frame, self._stream)
    width, height = (frame.height, frame.width) if self._turns % 2 else (frame.width, frame.height)
    stream = self._stream
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    source_fps = float(rate) if rate else 0.0
    self.info = VideoInfo(path=self.path, codec=stream.codec_context.name, source_fps=source_fps,
                          duration=_declared_duration(self._container, stream), num_frames=max(0, stream.frames),
                          width=width, height=height, rotation=90 * self._turns, fps=self._fps or source_fps)

  def _open_container(self) -> None:
    source = _open_source(self.path)
    if not isinstance(source, str):
      self._file = source
    try:
      self._container = av.open(source, metadata_errors='ignore')
    except av.FFmpegError as e:
      raise UnreadableVideoError(self.path, f'cannot be opened as a video ({e}). The file is probably truncated '
                                 'or not a media file: re-download or re-encode it.') from e
    if not self._container.streams.video:
      kinds = sorted({s.type for s in self._container.streams}) or ['none']
      self.close()
      raise NoVideoStreamError(self.path, f'has no video stream (streams: {", ".join(kinds)}). Only files with '
                               'a video track can be converted: remove it from the inputs.')
    self._stream = self._container.streams.video[0]
    # Slice threads only: frame threading drops the error of a broken last packet (the stream just ends early), and
    # decoding costs little next to colour conversion and JPEG encoding (same speed on 2 cores, measured).
    self._stream.thread_type = 'SLICE'

  def _decode(self, seek_to: Optional[float]) -> Iterator[Tuple[av.VideoFrame, float]]:
    """Yields (frame, seconds from stream start) in presentation order.

    A decode or demux error ends the frames and is kept in `self._failure` (with whether more data follows), to
    be raised once the caller has seen every frame before it: `_check_complete` decides between corruption and
    truncation.
    """
    stream = self._stream
    time_base = stream.time_base
    origin = stream.start_time or 0
    self._failure = None
    self._decoded_frames = 0
    self._from_start = not seek_to
    if seek_to:
      try:
        self._container.seek(origin + int(seek_to / time_base), stream=stream, backward=True, any_frame=False)
      except av.FFmpegError:
        return  # Not seekable: the caller falls back to decoding from the start.
    last_time = None
    default_step = 1.0 / float(stream.average_rate or DEFAULT_FPS)
    packets = self._container.demux(stream)
    while True:
      try:
        packet = next(packets, None)
        if packet is None:
          return
        frames = packet.decode()
      except av.FFmpegError as e:
        self._failure = _DecodeFailure(error=e, after=last_time, data_follows=_has_more_data(packets))
        return
      for frame in frames:
        if frame.pts is not None:
          time = float((frame.pts - origin) * time_base)
        else:
          # Some AVI streams lack timestamps: count frames at the declared rate.
          time = 0.0 if last_time is None else last_time + default_step
        last_time = time
        self._decoded_frames += 1
        yield frame, time

  def _to_array(self, frame: av.VideoFrame) -> np.ndarray:
    """Converts one decoded frame to an upright [H, W, 3] uint8 RGB array of the output size."""
    if self._size is None:
      # Fixed from the first converted frame: a mid-stream resolution change must not change the output size.
      self._size = output_size(frame.width, frame.height, self._short_side)
    width, height = self._size
    shrinking = width * height < frame.width * frame.height
    # BITEXACT | ACCURATE_RND: swscale's SIMD converters round differently per CPU; shards must not.
    scaler = av.video.reformatter.Interpolation.AREA if shrinking else av.video.reformatter.Interpolation.BILINEAR
    array = frame.to_ndarray(width=width, height=height, format='rgb24', interpolation=scaler | _BITEXACT, threads=1)
    if self._turns:
      array = np.ascontiguousarray(np.rot90(array, self._turns))
    return array

  def __iter__(self) -> Iterator[np.ndarray]:
    """Yields upright [H, W, 3] uint8 frames of the requested span, rate and size.

    Raises:
      RuntimeError: when iterated twice or before `open()`.
      OutsideTimeSpanError: when the requested span starts after the end of the video.
      TruncatedVideoError: when the file ends before the container says it does (after the frames decoded).
      UnreadableVideoError: on corrupt data (after the frames before it).
    """
    if self._first is None:
      raise RuntimeError('VideoReader: call open() (or use it as a context manager) before iterating.')
    if self._iterated:
      raise RuntimeError(f'VideoReader: {self.path} was already iterated; open a new reader.')
    self._iterated = True
    frames = _chain(self._first, self._frames)
    if self._fps:
      produced = self._resample(frames)
    else:
      produced = self._keep_rate(frames)
    count = 0
    for array, time in produced:
      count += 1
      self.timestamps.append(time)
      yield array
    self._check_complete()
    if not count:
      video_end = self._video_end
      raise OutsideTimeSpanError(
          self.path, f'the requested time span [{self._start}, {self._end}) s lies outside the video, which ends '
          f'at {video_end:.2f} s. Check time_start/time_end in the annotations, or that the file is the full video '
          'and not an already cut clip.')

  def _keep_rate(self, frames):
    start = self._start or 0.0
    self._video_end = 0.0
    for frame, time in frames:
      self._video_end = time + self._frame_duration(frame)
      if self._end is not None and time >= self._end - _TIME_EPSILON:
        self._stopped_at_end = True
        return
      if time >= start - _TIME_EPSILON:
        yield self._to_array(frame), time

  def _resample(self, frames):
    """Sample-and-hold: output time t_k = start + k / fps shows the last frame with timestamp <= t_k."""
    start = self._start or 0.0
    end = self._end
    step = 1.0 / self._fps
    k = 0
    held = held_array = None
    held_time = 0.0
    stopped_at_end = False
    for frame, time in frames:
      if held is not None:
        while True:
          t_k = start + k * step
          if t_k >= time - _TIME_EPSILON or (end is not None and t_k >= end - _TIME_EPSILON):
            break
          if held_array is None:
            held_array = self._to_array(held)  # Convert lazily: frames skipped by down-sampling cost nothing.
          yield held_array, t_k
          k += 1
      if end is not None and time >= end - _TIME_EPSILON:
        stopped_at_end = self._stopped_at_end = True
        break
      held, held_time, held_array = frame, time, None
    if held is None:
      return
    self._video_end = held_time + self._frame_duration(held)
    limit = end if stopped_at_end else self._video_end
    if end is not None:
      limit = min(limit, end)
    while start + k * step < limit - _TIME_EPSILON:
      if held_array is None:
        held_array = self._to_array(held)
      yield held_array, start + k * step
      k += 1

  def _check_complete(self) -> None:
    """Raises if decoding ended on corrupt data or before the end the container declares.

    Called once the frames are exhausted. Stopping at the requested `end` is complete whatever follows it.

    Raises:
      UnreadableVideoError: a decode error with more data after it (corruption inside the stream).
      TruncatedVideoError: a decode error at the end of the data, or fewer seconds (or frames, when decoded from
        the first frame) than declared; unless `allow_truncated`, which fills `truncation` instead.
    """
    failure = self._failure
    if failure is not None and failure.data_follows:
      raise UnreadableVideoError(self.path, f'corrupt data while decoding {failure.where()} ({failure.error}), '
                                 'with more data after it. Re-download or re-encode the file.') from failure.error
    if self._stopped_at_end:
      return
    info = self.info
    frame_time = 1.0 / (info.source_fps or DEFAULT_FPS)
    short = False
    if info.duration is not None:
      tolerance = max(_TRUNCATION_TOLERANCE_FRAMES * frame_time, _TRUNCATION_TOLERANCE_FRACTION * info.duration)
      short = self._video_end < info.duration - tolerance
    if self._from_start and info.num_frames:
      tolerance = max(_TRUNCATION_TOLERANCE_FRAMES, _TRUNCATION_TOLERANCE_FRACTION * info.num_frames)
      short = short or self._decoded_frames < info.num_frames - tolerance
    if not short and failure is None:
      return
    decoded = f'{self._video_end:.2f} s' + (f' ({_frames(self._decoded_frames)})' if self._from_start else '')
    declared = (f'{info.duration:.2f} s' if info.duration is not None else '') + (
        f' ({_frames(info.num_frames)})' if info.duration is not None and info.num_frames else
        _frames(info.num_frames) if info.num_frames else '')
    message = f'truncated: decoded {decoded} of the {declared or "unknown length"} the container declares'
    if failure is not None:
      message += f'; the data ends inside a frame {failure.where()} ({failure.error})'
    if self._allow_truncated:
      self.truncation = message
      return
    raise TruncatedVideoError(self.path, f'{message}. The file is probably an interrupted download, or damaged: '
                              're-download it (data_tools.convert --allow_truncated keeps the decodable part).')

  def _frame_duration(self, frame: av.VideoFrame) -> float:
    if frame.duration and frame.time_base:
      return float(frame.duration * frame.time_base)
    rate = self._stream.average_rate or self._stream.guessed_rate
    return 1.0 / float(rate) if rate else 1.0 / DEFAULT_FPS


def _chain(first, rest):
  yield first
  yield from rest


def _frames(count: int) -> str:
  return f'{count} frame' + ('' if count == 1 else 's')


def _has_more_data(packets: Iterator[av.Packet]) -> bool:
  """Whether the demuxer still yields a non-empty packet (it yields empty ones to flush the decoder at the end)."""
  try:
    return any(packet.size for packet in packets)
  except av.FFmpegError:
    return False


def _parse_clock(text: str) -> Optional[float]:
  """Seconds of an 'HH:MM:SS.fraction' Matroska DURATION tag, or None when it is not one."""
  parts = text.strip().split(':')
  if len(parts) != 3:
    return None
  try:
    hours, minutes, seconds = int(parts[0]), int(parts[1]), float(parts[2])
  except ValueError:
    return None
  return 3600.0 * hours + 60.0 * minutes + seconds


def _declared_duration(container: Any, stream: av.video.stream.VideoStream) -> Optional[float]:
  """Seconds of the video stream as the container declares it (from the stream's first frame), or None.

  Stream durations come from the index (mp4, avi) or the DURATION tag FFmpeg-made Matroska/WebM files carry per
  track; the container's duration is the last resort, as it also covers audio that may outlast the video.
  """
  if stream.duration and stream.time_base:
    return float(stream.duration * stream.time_base)
  tagged = _parse_clock(stream.metadata.get('DURATION', '') or stream.metadata.get('duration', ''))
  if tagged:
    return tagged
  if container.duration:
    offset = 0.0
    if stream.start_time is not None and stream.time_base and container.start_time is not None:
      offset = float(stream.start_time * stream.time_base) - container.start_time / av.time_base
    return container.duration / av.time_base - max(0.0, offset)
  return None


def read_video(path: str, fps: Optional[float] = DEFAULT_FPS, short_side: Optional[int] = DEFAULT_SHORT_SIDE,
               start: Optional[float] = None, end: Optional[float] = None,
               allow_truncated: bool = False) -> Tuple[np.ndarray, VideoInfo]:
  """Reads a whole video (or a span of it) into memory.

  Args:
    path: a video file (see `VideoReader`).
    fps: output frame rate; 0 or None keeps the source rate.
    short_side: output short-side length in pixels; 0 or None keeps the size.
    start: optional span start in seconds (inclusive).
    end: optional span end in seconds (exclusive).
    allow_truncated: keep the decodable frames of a truncated file instead of raising `TruncatedVideoError`.

  Returns:
    frames: [T, H, W, 3] uint8 upright RGB frames.
    info: `VideoInfo` of the source and output.

  Raises:
    VideoReadError: a subclass saying why the file cannot be read.
  """
  with VideoReader(path, fps=fps, short_side=short_side, start=start, end=end,
                   allow_truncated=allow_truncated) as reader:
    frames = np.stack(list(reader))
    return frames, reader.info
