"""Floating-point maths whose results are the same bits on every x86 CPU, for the synthetic video renderers.

NumPy evaluates sin, cos, arctan2 and hypot with SIMD code chosen at run time for the CPU (AVX-512, AVX2 or the
x86-64-v2 baseline), and those implementations differ in the last bit; OpenBLAS likewise picks a dot-product kernel
per CPU. Rendering the demo dataset with the AVX-512 and the AVX2 code paths of NumPy gave different pixels
(`NPY_DISABLE_CPU_FEATURES=X86_V4` reproduces the second on an AVX-512 machine). The renderers promise the same
bytes on every machine, so they use only:

  * IEEE-754 basic operations (+, -, *, /, sqrt, comparisons, floor, remainder), which every instruction set rounds
    identically, applied element-wise in float64 (NumPy does not fuse multiply-adds across ufuncs);
  * the transcendental functions below, whose float64 results are rounded to a grid of 2^-24 before use. Two
    implementations differ by a few units in the last place (~1e-16), so they snap to different grid points only
    when the exact value lies within ~1e-16 of a midpoint of the grid: about 1 in 10^8 evaluations, and then by
    6e-8, far below the 1/255 step of a pixel. The grid is much finer than anything the renderers draw.
"""
import numpy as np

_GRID = float(2**24)


def snap(x) -> np.ndarray:
  """Rounds float64 values to the nearest multiple of 2^-24 (exact: scaling by a power of two is lossless)."""
  return np.round(np.asarray(x, np.float64) * _GRID) / _GRID


def sin(x) -> np.ndarray:
  """sin(x) in float64, snapped to the grid."""
  return snap(np.sin(np.asarray(x, np.float64)))


def cos(x) -> np.ndarray:
  """cos(x) in float64, snapped to the grid."""
  return snap(np.cos(np.asarray(x, np.float64)))


def arctan2(y, x) -> np.ndarray:
  """arctan2(y, x) in float64, snapped to the grid."""
  return snap(np.arctan2(np.asarray(y, np.float64), np.asarray(x, np.float64)))


def hypot(x, y) -> np.ndarray:
  """sqrt(x^2 + y^2) from basic operations only (np.hypot's SIMD versions differ between CPUs)."""
  x = np.asarray(x, np.float64)
  y = np.asarray(y, np.float64)
  return np.sqrt(x * x + y * y)


def dot3(weights, values) -> float:
  """sum_i weights[i] * values[i] for short vectors, summed left to right (no BLAS kernel, no fused ops)."""
  total = 0.0
  for w, v in zip(weights, values):
    total += float(w) * float(v)
  return total
