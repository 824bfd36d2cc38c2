"""One-line formatting of the metrics the trainer logs at each logging step.

Orbit's controller prints `train | step: N | steps/sec: S | output:` and then, on the following lines, the
pretty-printed dict of NumPy scalars (`np.float32(2.61)`). Anyone reading the log line by line (`grep 'train |'`,
a progress bar, a CI log) sees `output:` with nothing after it. `format_metrics` puts the values on the same line.
"""
from typing import Any, Mapping

import numpy as np


def _format_value(value: Any) -> str:
  array = np.asarray(value)
  if array.ndim == 0:
    if np.issubdtype(array.dtype, np.floating):
      return f'{float(array):.6g}'
    if np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.bool_):
      return str(array.item())
    return str(value)
  return f'<{array.dtype} array of shape {list(array.shape)}>'


def _flatten(output: Mapping[str, Any], prefix: str = ''):
  for key in sorted(output, key=str):
    value = output[key]
    if isinstance(value, Mapping):
      yield from _flatten(value, f'{prefix}{key}/')
    else:
      yield f'{prefix}{key}', value


def format_metrics(output: Any) -> str:
  """`{'loss': np.float32(2.6), 'lr': 0.1}` -> `'loss=2.6, lr=0.1'` (sorted; nested dicts as `outer/inner`)."""
  if not isinstance(output, Mapping):
    return str(output)
  if not output:
    return '(no metrics)'
  return ', '.join(f'{key}={_format_value(value)}' for key, value in _flatten(output))
