"""Tests of benchmarks/gradient_cache_benchmark.py through its command line, as a user runs it.

The script defines absl flags at import (as the other benchmark scripts do, some with the same names), so it
runs in its own process here. The demo model on 4x32x32 clips: one cached step of two chunks with `--steps=0`
(memory only), about 20 CPU-seconds, most of it starting TensorFlow and tracing.
"""
import os
import re
import subprocess
import sys

import tensorflow as tf

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class GradientCacheBenchmarkTest(tf.test.TestCase):

  def test_memory_only_run_prints_a_row_without_time(self):
    proc = subprocess.run(
        [sys.executable, '-m', 'benchmarks.gradient_cache_benchmark', '--experiment=cvrl_pretrain_demo',
         '--feature_shape=4,32,32,3', '--large_batch=4', '--chunk_size=4', '--steps=0', '--configs=cached'],
        cwd=_ROOT, capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    # Batch 4 (8 clips) in chunks of 4 clips; no time with --steps=0; a peak RSS in GB.
    row = re.search(r'^\| cached \| 4 \| 4 \| - \| (\d+\.\d+) \|$', proc.stdout, re.MULTILINE)
    self.assertIsNotNone(row, proc.stdout)
    self.assertGreater(float(row.group(1)), 0.1)


if __name__ == '__main__':
  tf.test.main()
