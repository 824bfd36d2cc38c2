"""Tiny real video files for data_tools tests, encoded with PyAV.

Frame i of a generated video is a uniform grey of level `gray_level(i)`, so after decoding, resampling and JPEG
round trips a test can tell which source frame it got by the frame's mean (levels are 12 apart; codec error is a
few levels). An optional white band on the top rows lets tests check orientation.
"""

import os
from typing import Optional

import av
import numpy as np


def gray_level(index: int) -> int:
  """Grey level of source frame `index` (distinct for up to 20 frames)."""
  return 10 + 12 * index


def write_video(path: str, num_frames: int = 16, fps: int = 30, width: int = 32, height: int = 24,
                codec: str = 'libx264', rotation: Optional[int] = None, top_band: bool = False) -> str:
  """Writes a video whose frame i is grey level `gray_level(i)`.

  Args:
    path: output file; the container follows the extension (.mp4, .avi, .webm, .mkv, .mov, .gif).
    num_frames: number of frames.
    fps: frame rate.
    width: frame width.
    height: frame height.
    codec: PyAV encoder name (libx264, mpeg4, mjpeg, libvpx, libvpx-vp9, gif).
    rotation: optional display rotation in degrees counterclockwise, stored as a display matrix.
    top_band: paint the top quarter of every frame white (to check orientation).

  Returns:
    `path`.
  """
  os.makedirs(os.path.dirname(path), exist_ok=True)
  pixel_formats = {'mjpeg': 'yuvj420p', 'gif': 'rgb8'}
  with av.open(path, 'w') as container:
    stream = container.add_stream(codec, rate=fps)
    stream.width, stream.height = width, height
    stream.pix_fmt = pixel_formats.get(codec, 'yuv420p')
    if codec == 'libx264':
      stream.options = {'crf': '1'}  # Near-lossless, so grey levels survive.
    elif codec in ('mpeg4', 'mjpeg'):
      stream.options = {'qscale': '2'}
      stream.codec_context.qmin = 1
    if rotation is not None:
      stream.set_display_rotation(rotation)
    for i in range(num_frames):
      frame = np.full((height, width, 3), gray_level(i), np.uint8)
      if top_band:
        frame[:height // 4] = 255
      for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format='rgb24')):
        container.mux(packet)
    for packet in stream.encode():
      container.mux(packet)
  return path


def write_audio_only(path: str) -> str:
  """Writes a Matroska file with one audio stream and no video stream."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, 'w') as container:
    _write_silence(container)
  return path


def write_zero_frame_video(path: str) -> str:
  """Writes a Matroska file that declares a video stream but holds no video frames (only audio)."""
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with av.open(path, 'w') as container:
    video = container.add_stream('libx264', rate=25)
    video.width, video.height, video.pix_fmt = 32, 24, 'yuv420p'
    _write_silence(container)
  return path


def _write_silence(container) -> None:
  audio = container.add_stream('pcm_s16le', rate=8000)
  frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format='s16', layout='mono')
  frame.sample_rate = 8000
  frame.pts = 0
  for packet in audio.encode(frame):
    container.mux(packet)
  for packet in audio.encode():
    container.mux(packet)


def write_text(path: str, text: str = 'not a video') -> str:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return path
