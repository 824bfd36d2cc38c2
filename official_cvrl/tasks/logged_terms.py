"""The scalars a task's `build_losses` puts in `logs`, reported as metrics (training output and TensorBoard).

Model Garden's trainer reports the task's metrics and the total loss only; whatever else `train_step` returns is
dropped. So every term of `logs` needs a metric of its own, created before training starts. The names are found
by tracing `build_losses` once on symbolic inputs (nothing is computed), so a subclass that adds a term to `logs`
(README, "Extending a task") sees it reported without declaring it anywhere.
"""
from typing import Callable, Dict, Iterable, List

import tensorflow as tf
import tf_keras


class LoggedTermMean(tf_keras.metrics.Mean):
  """Mean over the steps of a logging interval of one scalar of `build_losses`' logs."""


def term_names(build_losses: Callable, *input_specs: tf.TensorSpec, **kwargs) -> List[str]:
  """Sorted names of the scalar terms `build_losses(*inputs, **kwargs)` returns in its logs dict.

  Args:
    build_losses: a task's `build_losses`, returning (total loss, dict of logged tensors).
    *input_specs: specs of its tensor arguments (shapes as small as the function accepts).
    **kwargs: its other (Python) arguments, e.g. `aux_losses=None`.

  Returns:
    The names of the rank-0 entries of the logs dict.
  """
  traced = tf.function(lambda *inputs: build_losses(*inputs, **kwargs)[1])
  logs = traced.get_concrete_function(*input_specs).structured_outputs
  return sorted(name for name, value in logs.items() if value.shape.rank == 0)


def build_metrics(build_losses: Callable, *input_specs: tf.TensorSpec, **kwargs) -> List[LoggedTermMean]:
  """One `LoggedTermMean` per scalar term of `build_losses`' logs (see `term_names`)."""
  return [LoggedTermMean(name, dtype=tf.float32)
          for name in term_names(build_losses, *input_specs, **kwargs)]


def update(metrics: Iterable[tf_keras.metrics.Metric], logs: Dict[str, tf.Tensor]) -> None:
  """Adds this step's value of each logged term to its metric; other metrics are left to the caller."""
  for metric in metrics or []:
    if isinstance(metric, LoggedTermMean) and metric.name in logs:
      metric.update_state(logs[metric.name])


def other_metrics(metrics: Iterable[tf_keras.metrics.Metric]) -> List[tf_keras.metrics.Metric]:
  """The metrics that are not logged terms (e.g. accuracies updated from labels and predictions)."""
  return [metric for metric in metrics or [] if not isinstance(metric, LoggedTermMean)]
