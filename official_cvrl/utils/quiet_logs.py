"""Keeps TensorFlow's start-up noise out of the driver's output without hiding real errors.

On a machine without an NVIDIA driver, the first device query makes XLA's CUDA platform call `cuInit`, which fails,
and TensorFlow logs it at ERROR level (`E ... cuda_platform.cc:51] failed call to cuInit: ... (303)`) although the
run then proceeds on the CPU as intended. `TF_CPP_MIN_LOG_LEVEL` cannot hide it without hiding every other error,
so `initialize_devices` runs that first query with the process's stderr captured and writes back everything except
the cuInit line for exactly these two causes: no driver library at all (CUDA error 303 from TensorFlow's stub) and
a driver that sees no device (CUDA_ERROR_NO_DEVICE, e.g. `CUDA_VISIBLE_DEVICES=-1`). A cuInit failure with any
other code (a broken or mismatched driver on a GPU machine) is shown as before.
"""
import os
import re
import sys
import tempfile
from typing import List

import tensorflow as tf

_NO_GPU_CUINIT = re.compile(
    r'cuda_platform\.cc:\d+\] failed call to cuInit: .*(?:\(303\)|CUDA_ERROR_NO_DEVICE|no CUDA-capable device)')


def is_no_gpu_noise(line: str) -> bool:
  """True for the cuInit failure of a machine that has no NVIDIA driver or no visible GPU."""
  return bool(_NO_GPU_CUINIT.search(line))


def initialize_devices() -> List[tf.config.PhysicalDevice]:
  """Initialises TensorFlow's devices, dropping only the no-GPU cuInit error from what they log.

  Returns:
    The physical GPUs (empty on a CPU-only machine).
  """
  sys.stderr.flush()
  with tempfile.TemporaryFile() as captured:
    saved_stderr = os.dup(2)
    os.dup2(captured.fileno(), 2)
    try:
      gpus = tf.config.list_physical_devices('GPU')
    finally:
      os.dup2(saved_stderr, 2)
      os.close(saved_stderr)
    captured.seek(0)
    lines = captured.read().splitlines(keepends=True)
  kept = [line for line in lines if gpus or not is_no_gpu_noise(line.decode('utf-8', errors='replace'))]
  if kept:
    os.write(2, b''.join(kept))  # Back where TensorFlow wrote it, byte for byte.
  return gpus
