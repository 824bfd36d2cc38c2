"""Tests for data_tools/synthetic/portable_math.py against float64 references and exact grid arithmetic."""
import math

import numpy as np
import tensorflow as tf

from data_tools.synthetic import portable_math as pm


class PortableMathTest(tf.test.TestCase):

  def test_values_are_on_the_grid_and_within_half_a_step(self):
    x = np.random.default_rng(0).uniform(-50.0, 50.0, size=10000)
    step = 2.0**-24
    for got, want in ((pm.sin(x), [math.sin(v) for v in x]), (pm.cos(x), [math.cos(v) for v in x]),
                      (pm.arctan2(x, x[::-1]), [math.atan2(a, b) for a, b in zip(x, x[::-1])])):
      self.assertEqual(got.dtype, np.float64)
      np.testing.assert_array_equal(got / step, np.round(got / step))  # Exactly on the grid.
      self.assertLessEqual(np.max(np.abs(got - np.asarray(want))), step / 2 + 1e-15)

  def test_snap_rounds_half_to_even_exactly(self):
    step = 2.0**-24
    np.testing.assert_array_equal(pm.snap([0.5 * step, 1.5 * step, -0.5 * step, 3.0]), [0.0, 2 * step, -0.0, 3.0])

  def test_hypot_and_dot3_use_basic_operations(self):
    x = np.array([3.0, 1e-3, 0.0], np.float32)
    y = np.array([4.0, 1e-3, 0.0], np.float32)
    np.testing.assert_array_equal(pm.hypot(x, y),
                                  np.sqrt(x.astype(np.float64)**2 + y.astype(np.float64)**2))
    self.assertEqual(pm.dot3([0.299, 0.587, 0.114], [1.0, 2.0, 3.0]), (0.299 * 1.0 + 0.587 * 2.0) + 0.114 * 3.0)


if __name__ == '__main__':
  tf.test.main()
