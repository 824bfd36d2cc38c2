"""Proof that the authors' released CVRL backbones work in our evaluations, without downloading them.

The released checkpoints (`<name>/<name>_backbone-1`, docs/evaluation.md) are `tf.train.Checkpoint(backbone=...)`
of Model Garden's own `resnet_3d` in the CVRL configuration, trained with batch norm momentum 0.9 / epsilon 1e-5.
Here Model Garden's backbone is built in that configuration, every variable (batch norm moving statistics
included) is randomised and saved in the released layout; the evaluation experiments' `task.initialize()` and the
export + feature-extraction CLIs must then give Model Garden's own features on the same clips, to 1e-5 relative
in float32. Negative checks show the comparison would catch the old epsilon (1e-3) or a swapped statistic. The
export and extraction CLIs are checked in tests/serving/released_checkpoint_export_test.py (a separate file, so
the suite's parallel runner can take the two R3D-50 halves at once).
"""
import os

from absl import logging
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from official.core import exp_factory
from official.core import task_factory
from official.vision.modeling.backbones import resnet_3d

from official_cvrl import registry_imports  # pylint: disable=unused-import  (registers experiments and tasks)
from official_cvrl.serving import export_module
from official_cvrl.utils import checkpoints

RELEASE = 'r3d_1x_k400_800ep'
TOLERANCE = 1e-5


def model_garden_cvrl_backbone() -> tf_keras.Model:
  """Model Garden's resnet_3d as in video_ssl's cvrl_linear_eval_k600.yaml, with the release's batch norm."""
  return resnet_3d.ResNet3D(
      model_id=50,
      temporal_strides=[1, 1, 1, 1],
      temporal_kernel_sizes=[(1, 1, 1), (1, 1, 1, 1), (3,) * 6, (3, 3, 3)],
      use_self_gating=[False] * 4,
      stem_type='v0',
      stem_conv_temporal_kernel_size=5,
      stem_conv_temporal_stride=2,
      stem_pool_temporal_stride=1,
      norm_momentum=0.9,
      norm_epsilon=1e-5,
      input_specs=tf_keras.layers.InputSpec(shape=[None, None, None, None, 3]))


def randomize(model: tf_keras.Model, seed: int = 0) -> None:
  """Distinct values everywhere; BN variances spread over [0.05, 2] so that epsilon matters measurably."""
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    shape, name = variable.shape, variable.name
    if 'moving_variance' in name:
      value = rng.uniform(0.05, 2.0, shape)
    elif 'moving_mean' in name or 'beta' in name:
      value = rng.normal(0.0, 0.2, shape)
    elif 'gamma' in name:
      value = rng.uniform(0.5, 1.5, shape)
    else:
      value = variable.numpy() * rng.uniform(0.8, 1.2, shape)
    variable.assign(value.astype(np.float32))


def save_release(root: str):
  """(Model Garden backbone, folder, prefix) of a randomised backbone saved as `<root>/<name>/<name>_backbone-1`.

  The folder keeps no "checkpoint" bookkeeping file, as an unpacked archive need not: it must resolve without it.
  """
  model_garden = model_garden_cvrl_backbone()
  randomize(model_garden)
  folder = os.path.join(root, RELEASE)
  prefix = tf.train.Checkpoint(backbone=model_garden).save(os.path.join(folder, f'{RELEASE}_backbone'))
  os.remove(os.path.join(folder, 'checkpoint'))
  return model_garden, folder, prefix


def relative_error(actual, expected) -> float:
  return float(np.linalg.norm(np.asarray(actual, np.float64) - expected) / np.linalg.norm(expected))


def _checksums(model: tf_keras.Model):
  return sorted((tuple(v.shape), float(np.sum(v.numpy(), dtype=np.float64))) for v in model.variables)


def pooled(model_garden: tf_keras.Model, clips_uint8: np.ndarray) -> np.ndarray:
  """Model Garden's video representation: res5 averaged over time and space, float64 `[batch, 2048]`."""
  images = tf.cast(clips_uint8, tf.float32) / 255.0
  return tf.reduce_mean(model_garden(images, training=False)['5'], axis=[1, 2, 3]).numpy().astype(np.float64)


class ReleasedCheckpointTest(parameterized.TestCase, tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.model_garden, cls.folder, cls.prefix = save_release(cls.root)
    rng = np.random.default_rng(1)
    cls.clip_32 = rng.integers(0, 256, [1, 32, 256, 256, 3], dtype=np.uint8)
    cls.expected_32 = pooled(cls.model_garden, cls.clip_32)

  def _task_and_model(self, experiment: str, init_checkpoint: str, **overrides):
    config = exp_factory.get_exp_config(experiment)
    config.task.init_checkpoint = init_checkpoint
    config.task.model.norm_activation.override(overrides)
    if experiment.startswith('cvrl_action_detection'):
      # Its AVA label files are data the restore does not need; small clips keep the build's forward pass cheap.
      config.task.evaluation.override({'label_map_path': '', 'excluded_timestamps_path': ''})
      config.task.train_data.feature_shape = config.task.validation_data.feature_shape = (8, 64, 64, 3)
    task = task_factory.get_task(config.task)
    model = task.build_model()
    return task, model

  def test_released_layout_is_recognised(self):
    self.assertEqual(self.prefix, os.path.join(self.folder, f'{RELEASE}_backbone-1'))
    self.assertEqual(checkpoints.resolve_checkpoint(self.folder), self.prefix)
    self.assertEqual(checkpoints.checkpoint_layout(self.prefix), checkpoints.LAYOUT_BACKBONE_ONLY)
    self.assertTrue(checkpoints.is_backbone_only(self.folder))

  def test_linear_eval_initialize_gives_model_garden_features_at_32x256(self):
    task, model = self._task_and_model('cvrl_linear_eval_kinetics400', self.prefix)
    with self.assertLogs(logging.get_absl_logger(), 'INFO') as logs:
      task.initialize(model)
    self.assertTrue(any('backbone-only' in line and 'epsilon 1e-05' in line for line in logs.output), logs.output)
    features = export_module.feature_extractor(model)(tf.cast(self.clip_32, tf.float32) / 255.0, training=False)
    self.assertLess(relative_error(features[export_module.FEATURES], self.expected_32), TOLERANCE)

    # Negative check: a swapped statistic (moving mean <-> variance of one batch norm) is far outside tolerance.
    norm = model.backbone.get_layer('stem_bn')
    mean, variance = norm.moving_mean.numpy(), norm.moving_variance.numpy()
    norm.moving_mean.assign(variance)
    norm.moving_variance.assign(mean ** 2 + 0.05)  # Kept positive; still the wrong statistic.
    swapped = export_module.feature_extractor(model)(tf.cast(self.clip_32, tf.float32) / 255.0, training=False)
    self.assertGreater(relative_error(swapped[export_module.FEATURES], self.expected_32), 100 * TOLERANCE)

  def test_old_epsilon_fails_the_comparison_and_is_warned_about(self):
    task, model = self._task_and_model('cvrl_linear_eval_kinetics400', self.folder, norm_epsilon=1e-3)
    with self.assertLogs(logging.get_absl_logger(), 'WARNING') as logs:
      task.initialize(model)
    self.assertTrue(any('differs from the 1e-05' in line for line in logs.output), logs.output)
    features = export_module.feature_extractor(model)(tf.cast(self.clip_32, tf.float32) / 255.0, training=False)
    self.assertGreater(relative_error(features[export_module.FEATURES], self.expected_32), 100 * TOLERANCE)

  @parameterized.parameters('cvrl_linear_eval_ucf101', 'cvrl_semi_supervised_kinetics400', 'cvrl_action_detection_ava')
  def test_every_evaluation_experiment_restores_the_release(self, experiment):
    task, model = self._task_and_model(experiment, self.folder)
    task.initialize(model)
    self.assertEqual(checkpoints.batch_norm_settings(model.backbone), {(0.9, 1e-5)})
    # The restored values are Model Garden's, variable for variable (each randomised value is distinct, so equal
    # per-variable checksums mean equal variables; listing orders differ once a backbone is frozen).
    self.assertEqual(_checksums(model.backbone), _checksums(self.model_garden))


if __name__ == '__main__':
  tf.test.main()
