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


@dataclasses.dataclass(frozen=True)
class VideoInfo:
  """Facts about a source video and the frames the reader produces from it.

  Attributes:
    path: the file read.
    codec: FFmpeg codec name of the video stream, e.g. 'h264'.
    source_fps: average frame rate of the source stream (0.0 when the file does not say).
    duration: duration of the video stream in seconds, or None when the file does not say.
    width: upright source width in pixels (after rotation).
    height: upright source height in pixels (after rotation).
    rotation: degrees counterclockwise the decoded frames were rotated to be upright (0, 90, 180 or 270).
    fps: frame rate of the produced frames (the target rate, or `source_fps` when keeping the source rate).
  """
  path: str
  codec: str
  source_fps: float
  duration: Optional[float]
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
  later while decoding (corrupt data, a span past the end of the video) surface during iteration.
  """

  def __init__(self, path: str, fps: Optional[float] = DEFAULT_FPS, short_side: Optional[int] = DEFAULT_SHORT_SIDE,
               start: Optional[float] = None, end: Optional[float] = None):
    """Configures the reader.

    Args:
      path: a local video file, or a remote path TensorFlow's gfile can read (`gs://...`).
      fps: output frame rate; 0 or None keeps the source frames and their timestamps.
      short_side: output length of the shorter side in pixels, keeping the aspect ratio; 0 or None keeps the size.
      start: optional start of the span to read, in seconds from the first frame (inclusive).
      end: optional end of the span to read, in seconds (exclusive).

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
    self._container = None
    self._file = None  # File object of a remote path, closed with the container.
    self._stream = None
    self._frames = None
    self._first = None
    self._turns = 0
    self._size = None  # Output (width, height) before rotation.
    self._iterated = False
    self._video_end = 0.0  # Seconds; known once decoding reached the end of the span or of the stream.
    self.info: Optional[VideoInfo] = None
    self.timestamps: List[float] = []

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
      raise ZeroFramesError(self.path, 'the video stream decodes to zero frames. The file is probably empty or '
                            'truncated: re-download or re-encode it.')
    frame = self._first[0]
    self._turns = _rotation_quarter_turns(frame, self._stream)
    width, height = (frame.height, frame.width) if self._turns % 2 else (frame.width, frame.height)
    stream = self._stream
    rate = stream.average_rate or stream.guessed_rate or stream.base_rate
    source_fps = float(rate) if rate else 0.0
    if stream.duration and stream.time_base:
      duration = float(stream.duration * stream.time_base)
    elif self._container.duration:
      duration = self._container.duration / av.time_base
    else:
      duration = None
    self.info = VideoInfo(path=self.path, codec=stream.codec_context.name, source_fps=source_fps,
                          duration=duration, width=width, height=height, rotation=90 * self._turns,
                          fps=self._fps or source_fps)

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
    self._stream.thread_type = 'AUTO'  # Frame threading: several times faster h264 decoding, same output.

  def _decode(self, seek_to: Optional[float]) -> Iterator[Tuple[av.VideoFrame, float]]:
    """Yields (frame, seconds from stream start) in presentation order."""
    stream = self._stream
    time_base = stream.time_base
    origin = stream.start_time or 0
    if seek_to:
      try:
        self._container.seek(origin + int(seek_to / time_base), stream=stream, backward=True, any_frame=False)
      except av.FFmpegError:
        return  # Not seekable: the caller falls back to decoding from the start.
    last_time = None
    default_step = 1.0 / float(stream.average_rate or DEFAULT_FPS)
    try:
      for frame in self._container.decode(stream):
        if frame.pts is not None:
          time = float((frame.pts - origin) * time_base)
        else:
          # Some AVI streams lack timestamps: count frames at the declared rate.
          time = 0.0 if last_time is None else last_time + default_step
        last_time = time
        yield frame, time
    except av.FFmpegError as e:
      where = 'at the start' if last_time is None else f'after {last_time:.2f} s'
      raise UnreadableVideoError(self.path, f'corrupt data while decoding {where} ({e}). Re-download or '
                                 're-encode the file.') from e

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
      UnreadableVideoError: on corrupt data.
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
        stopped_at_end = True
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

  def _frame_duration(self, frame: av.VideoFrame) -> float:
    if frame.duration and frame.time_base:
      return float(frame.duration * frame.time_base)
    rate = self._stream.average_rate or self._stream.guessed_rate
    return 1.0 / float(rate) if rate else 1.0 / DEFAULT_FPS


def _chain(first, rest):
  yield first
  yield from rest


def read_video(path: str, fps: Optional[float] = DEFAULT_FPS, short_side: Optional[int] = DEFAULT_SHORT_SIDE,
               start: Optional[float] = None, end: Optional[float] = None) -> Tuple[np.ndarray, VideoInfo]:
  """Reads a whole video (or a span of it) into memory.

  Args:
    path: a video file (see `VideoReader`).
    fps: output frame rate; 0 or None keeps the source rate.
    short_side: output short-side length in pixels; 0 or None keeps the size.
    start: optional span start in seconds (inclusive).
    end: optional span end in seconds (exclusive).

  Returns:
    frames: [T, H, W, 3] uint8 upright RGB frames.
    info: `VideoInfo` of the source and output.

  Raises:
    VideoReadError: a subclass saying why the file cannot be read.
  """
  with VideoReader(path, fps=fps, short_side=short_side, start=start, end=end) as reader:
    frames = np.stack(list(reader))
    return frames, reader.info
