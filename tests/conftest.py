"""Test-session set-up shared by every test module.

Two logical CPU devices are configured before TensorFlow creates its devices, so that distribution tests can
run a MirroredStrategy across two replicas on a CPU-only machine. Single-device code is unaffected.
"""
import os

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
os.environ.setdefault('TF_ENABLE_ONEDNN_OPTS', '1')  # See official_cvrl/__init__.py.

import tensorflow as tf  # pylint: disable=g-import-not-at-top

_cpus = tf.config.list_physical_devices('CPU')
if _cpus:
  try:
    tf.config.set_logical_device_configuration(
        _cpus[0], [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])
  except RuntimeError:
    pass  # Devices were already initialised by an earlier import; tests needing two devices skip themselves.
