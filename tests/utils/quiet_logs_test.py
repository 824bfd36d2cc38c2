"""quiet_logs: only the no-GPU cuInit error is dropped from what device initialisation logs."""
import os
import sys
from unittest import mock

import tensorflow as tf

from official_cvrl.utils import quiet_logs

# Verbatim from TensorFlow 2.20 on a machine without an NVIDIA driver, and with CUDA_VISIBLE_DEVICES=-1.
_NO_DRIVER = ('2026-11-30 07:25:13.542041: E external/local_xla/xla/stream_executor/cuda/cuda_platform.cc:51] '
              'failed call to cuInit: INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)')
_NO_DEVICE = ('E0000 00:00:1700000000.000000 1 cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: '
              'Failed call to cuInit: CUDA_ERROR_NO_DEVICE: no CUDA-capable device is detected')
# A driver that does not match the CUDA runtime: a real problem on a GPU machine, never hidden.
_BROKEN_DRIVER = ('E0000 00:00:1700000000.000000 1 cuda_platform.cc:51] failed call to cuInit: INTERNAL: CUDA error: '
                  'Failed call to cuInit: CUDA_ERROR_SYSTEM_DRIVER_MISMATCH: system has unsupported display driver')


class QuietLogsTest(tf.test.TestCase):

  def test_recognises_only_the_no_gpu_causes(self):
    self.assertTrue(quiet_logs.is_no_gpu_noise(_NO_DRIVER))
    self.assertTrue(quiet_logs.is_no_gpu_noise(_NO_DEVICE))
    self.assertFalse(quiet_logs.is_no_gpu_noise(_BROKEN_DRIVER))
    self.assertFalse(quiet_logs.is_no_gpu_noise('E tensorflow/core/framework/op_kernel.cc:1] OOM (303)'))

  def _stderr_of(self, device_query):
    """What `initialize_devices` leaves on file descriptor 2 when the device query logs through it."""
    path = os.path.join(self.get_temp_dir(), f'stderr_{self.id().rsplit(".", 1)[-1]}.txt')
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, 'wb') as f:
      os.dup2(f.fileno(), 2)
      try:
        with mock.patch.object(tf.config, 'list_physical_devices', device_query):
          gpus = quiet_logs.initialize_devices()
      finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
    with open(path) as f:
      return gpus, f.read()

  def test_drops_the_noise_and_replays_everything_else(self):
    def query(device_type):
      del device_type
      for line in ('I cudart_stub.cc:31] Could not find cuda drivers', _NO_DRIVER, _BROKEN_DRIVER):
        os.write(2, (line + '\n').encode())
      return []

    gpus, stderr = self._stderr_of(query)
    self.assertEqual(gpus, [])
    self.assertEqual(stderr, f'I cudart_stub.cc:31] Could not find cuda drivers\n{_BROKEN_DRIVER}\n')

  def test_keeps_everything_when_a_gpu_is_found(self):
    def query(device_type):
      del device_type
      os.write(2, (_NO_DEVICE + '\n').encode())
      return ['GPU:0']

    gpus, stderr = self._stderr_of(query)
    self.assertEqual(gpus, ['GPU:0'])
    self.assertEqual(stderr, _NO_DEVICE + '\n')


if __name__ == '__main__':
  tf.test.main()
