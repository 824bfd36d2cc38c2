"""metrics_format: a step's metrics on one line."""
import numpy as np
import tensorflow as tf

from official_cvrl.utils import metrics_format


class MetricsFormatTest(tf.test.TestCase):

  def test_one_sorted_line_of_plain_numbers(self):
    output = {'training_loss': np.float32(2.6115062), 'learning_rate': np.float32(8.0000005e-05),
              'contrastive_accuracy': np.float32(0.5), 'steps': np.int64(7)}
    self.assertEqual(metrics_format.format_metrics(output),
                     'contrastive_accuracy=0.5, learning_rate=8e-05, steps=7, training_loss=2.61151')

  def test_nested_arrays_and_empty(self):
    output = {'validation': {'frame_map': 0.25}, 'per_class': np.zeros([3, 2], np.float32)}
    self.assertEqual(metrics_format.format_metrics(output),
                     'per_class=<float32 array of shape [3, 2]>, validation/frame_map=0.25')
    self.assertEqual(metrics_format.format_metrics({}), '(no metrics)')
    self.assertNotIn('\n', metrics_format.format_metrics({f'm{i}': float(i) for i in range(40)}))


if __name__ == '__main__':
  tf.test.main()
