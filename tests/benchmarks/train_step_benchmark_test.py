"""Tests of benchmarks/train_step_benchmark.py: settings a device cannot run are skipped with a reason.

Its defaults (float32 and float16, XLA off and on) used to crash on a CPU at the first float16 setting, which has
no float16 MaxPool3D kernel there.
"""

import os
import subprocess
import sys

import tensorflow as tf

from benchmarks import train_step_benchmark

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


class TrainStepBenchmarkTest(tf.test.TestCase):

  def test_unsupported_reason(self):
    missing_kernel = tf.errors.NotFoundError(
        None, None, "Exception encountered when calling layer 'stem_pool' (type MaxPooling3D).\n\nCould not find "
        'device for node: {{node MaxPool3D}} = MaxPool3D[T=DT_HALF, data_format="NDHWC", ksize=[1, 1, 3, 3, 1]]')
    self.assertEqual(train_step_benchmark.unsupported_reason(missing_kernel), 'no MaxPool3D kernel for half')
    no_kernel = tf.errors.InvalidArgumentError(
        None, None, "No registered 'Conv3D' OpKernel for 'GPU' devices compatible with node {{node c}} (T=DT_BFLOAT16)")
    self.assertEqual(train_step_benchmark.unsupported_reason(no_kernel), 'no Conv3D kernel for bfloat16')
    xla = tf.errors.UnimplementedError(None, None, 'XLA compilation of Foo is unimplemented')
    self.assertEqual(train_step_benchmark.unsupported_reason(xla), 'XLA compilation of Foo is unimplemented')
    # Real failures are not hidden.
    self.assertIsNone(train_step_benchmark.unsupported_reason(tf.errors.NotFoundError(None, None, 'x.yaml: no file')))
    self.assertIsNone(train_step_benchmark.unsupported_reason(
        tf.errors.InvalidArgumentError(None, None, 'Incompatible shapes: [2,128] vs. [4,128]')))
    self.assertIsNone(train_step_benchmark.unsupported_reason(ValueError('not supported')))

  def test_params_override_reaches_the_config_and_rejects_unknown_keys(self):
    config = train_step_benchmark.experiment_config(
        'cvrl_pretrain_demo', 'task.train_data.spatial_augmentation.enabled=false')
    self.assertFalse(config.task.train_data.spatial_augmentation.enabled)
    self.assertTrue(train_step_benchmark.experiment_config(
        'cvrl_pretrain_demo', '').task.train_data.spatial_augmentation.enabled)
    with self.assertRaisesRegex(KeyError, 'enabeld'):
      train_step_benchmark.experiment_config('cvrl_pretrain_demo', 'task.train_data.spatial_augmentation.enabeld=0')

  def test_cpu_skips_float16_with_a_row_and_measures_float32(self):
    process = subprocess.run(
        [sys.executable, '-m', 'benchmarks.train_step_benchmark', '--experiment=cvrl_pretrain_demo',
         '--per_replica_batch=2', '--precisions=float32,float16', '--xla=false', '--warmup_steps=1', '--steps=1'],
        cwd=_REPO_ROOT, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', CUDA_VISIBLE_DEVICES=''),
        capture_output=True, text=True, timeout=600, check=False)
    self.assertEqual(process.returncode, 0, process.stderr[-3000:])
    rows = [line for line in process.stdout.splitlines() if line.startswith('| float')]
    self.assertLen(rows, 2)
    self.assertRegex(rows[0], r'^\| float32 \| false \| \d+\.\d \|$')
    self.assertEqual(rows[1], '| float16 | false | skipped: CPU cannot run it (no MaxPool3D kernel for half) |')


if __name__ == '__main__':
  tf.test.main()
