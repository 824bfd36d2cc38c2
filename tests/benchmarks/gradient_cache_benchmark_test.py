"""Tests of benchmarks/gradient_cache_benchmark.py's worker: each configuration runs a real step and reports it.

The demo model on 4x32x32 clips, in-process (the script runs each configuration in its own process only so that
peak RSS is per configuration): one cached step of two chunks, about 15 CPU-seconds, most of it tracing.
"""
import math

import tensorflow as tf

from benchmarks import gradient_cache_benchmark


def _spec(batch, chunk_size, steps):
  return dict(experiment='cvrl_pretrain_demo', feature_shape=[4, 32, 32, 3], batch=batch, chunk_size=chunk_size,
              steps=steps)


class GradientCacheBenchmarkTest(tf.test.TestCase):

  def test_cached_step_runs_and_steps_zero_reports_memory_only(self):
    result = gradient_cache_benchmark.run_one(_spec(batch=4, chunk_size=4, steps=0))
    self.assertIsNone(result['seconds_per_step'])
    self.assertGreater(result['peak_rss_gb'], 0.1)
    self.assertEqual(gradient_cache_benchmark._seconds(result), '-')  # pylint: disable=protected-access
    self.assertEqual(gradient_cache_benchmark._seconds({'seconds_per_step': 1.234}), '1.23')  # pylint: disable=protected-access


if __name__ == '__main__':
  tf.test.main()
