"""logged_terms: every scalar a task's build_losses logs becomes a reported metric, a subclass's terms included."""
import dataclasses

import numpy as np
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory

from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.configs import cvrl as cvrl_cfg
from official_cvrl.tasks import logged_terms
from official_cvrl.tasks import pretrain


@dataclasses.dataclass
class _ExtraTermPretrainConfig(cvrl_cfg.CVRLPretrainTask):
  """Test-only task config: registers the subclass below under its own config class."""
  extra_weight: float = 0.5


@task_factory.register_task_cls(_ExtraTermPretrainConfig)
class _ExtraTermPretrainTask(pretrain.CVRLPretrainTask):

  def build_losses(self, projections, aux_losses=None):
    total, logs = super().build_losses(projections, aux_losses)
    logs['mean_square_projection'] = tf.reduce_mean(tf.square(tf.cast(projections, tf.float32)))
    logs['per_dimension_mean'] = tf.reduce_mean(projections, axis=0)  # Not a scalar: not a metric.
    return total + self.task_config.extra_weight * logs['mean_square_projection'], logs


class LoggedTermsTest(tf.test.TestCase):

  def test_term_names_are_the_scalars_of_the_logs(self):
    def build_losses(x, aux_losses=None):
      del aux_losses
      return tf.reduce_sum(x), {'b': tf.reduce_mean(x), 'a': tf.reduce_max(x), 'vector': x[0]}

    names = logged_terms.term_names(build_losses, tf.TensorSpec([3, 2], tf.float32), aux_losses=None)
    self.assertEqual(names, ['a', 'b'])

  def test_update_touches_only_logged_term_metrics(self):
    accuracy = tf_keras.metrics.SparseCategoricalAccuracy(name='accuracy')
    term = logged_terms.LoggedTermMean('class_loss')
    logged_terms.update([accuracy, term], {'class_loss': tf.constant(2.0), 'accuracy': tf.constant(9.0)})
    logged_terms.update([accuracy, term], {'class_loss': tf.constant(4.0)})
    self.assertAllClose(term.result(), 3.0)
    self.assertEqual(int(accuracy.count), 0)
    self.assertEqual(logged_terms.other_metrics([accuracy, term]), [accuracy])

  def test_subclass_term_is_reported(self):
    config = exp_factory.get_exp_config('cvrl_pretrain_demo')
    task = task_factory.get_task(_ExtraTermPretrainConfig(**config.task.as_dict()))
    metrics = task.build_metrics()
    names = [m.name for m in metrics]
    self.assertIn('mean_square_projection', names)
    self.assertIn('contrastive_loss', names)
    self.assertNotIn('per_dimension_mean', names)

    rng = np.random.default_rng(0)
    dim = config.task.model.projection_head.output_dim
    batches = [rng.standard_normal([8, dim]) for _ in range(2)]
    for batch in batches:
      _, logs = task.build_losses(tf.constant(batch, tf.float32))
      logged_terms.update(metrics, logs)
    by_name = {m.name: m for m in metrics}
    expected = np.mean([np.mean(np.square(b)) for b in batches])  # float64 reference.
    self.assertAllClose(by_name['mean_square_projection'].result(), expected, rtol=1e-5)


if __name__ == '__main__':
  tf.test.main()
