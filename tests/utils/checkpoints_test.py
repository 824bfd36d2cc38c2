"""Tests of the strict backbone restore: exact values on a match, every bad variable listed otherwise."""
import os

from absl import logging
import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official_cvrl.configs import backbones
from official_cvrl.configs import cvrl
from official_cvrl.modeling import factory as _factory  # pylint: disable=unused-import  (registers builders)
from official_cvrl.utils import checkpoints
from official_cvrl.utils import errors

_INPUT = tf_keras.layers.InputSpec(shape=[None, 4, 32, 32, 3])


def _backbone_config(**r3d_overrides):
  config = cvrl.demo_backbone()
  config.r3d.override(r3d_overrides)
  return config


def pretrain_model(**r3d_overrides):
  """A tiny CVRL pretraining model (R3D-18 at width 0.25, no stem pool) with its variables built."""
  config = backbones.CVRLModel(backbone=_backbone_config(**r3d_overrides),
                               projection_head=backbones.ProjectionHead(num_hidden_layers=1, hidden_dim=32,
                                                                        output_dim=16))
  return factory_3d.build_model('cvrl', _INPUT, config, num_classes=0)


def classifier(num_classes=3, **r3d_overrides):
  config = backbones.VideoClassifierModel(backbone=_backbone_config(**r3d_overrides), normalize_features=True)
  return factory_3d.build_model('cvrl_classifier', _INPUT, config, num_classes=num_classes)


def randomize(model, seed=0):
  """Gives every variable (BN moving statistics included) a distinctive value at the scale of its initial one."""
  rng = np.random.default_rng(seed)
  for variable in model.variables:
    scale = rng.uniform(0.5, 1.5, variable.shape)
    offset = rng.uniform(-0.05, 0.05, variable.shape)
    variable.assign((variable.numpy() * scale + offset).astype(variable.dtype.as_numpy_dtype))


def save_like_model_garden(model, model_dir, step=1):
  """Writes a checkpoint with the root layout of Model Garden's trainer: global_step, model, optimizer, items."""
  optimizer = tf_keras.optimizers.SGD(0.1, momentum=0.9)
  checkpoint = tf.train.Checkpoint(global_step=tf.Variable(step, dtype=tf.int64), model=model, optimizer=optimizer,
                                   **model.checkpoint_items)
  manager = tf.train.CheckpointManager(checkpoint, model_dir, max_to_keep=2)
  return manager.save(checkpoint_number=step)


class RestoreBackboneTest(tf.test.TestCase):

  def test_pretrain_checkpoint_restores_into_classifier(self):
    source = pretrain_model()
    randomize(source)
    model_dir = os.path.join(self.get_temp_dir(), 'pretrain')
    save_like_model_garden(source, model_dir, step=1)
    randomize(source, seed=1)
    latest = save_like_model_garden(source, model_dir, step=2)
    target = classifier()
    classifier_kernel = target.get_layer('classifier').kernel.numpy()
    path = checkpoints.restore_backbone(target.backbone, model_dir)
    self.assertEqual(path, latest)  # The latest checkpoint of the model_dir.
    for restored, original in zip(target.backbone.variables, source.backbone.variables):
      self.assertEqual(restored.name, original.name)
      self.assertAllEqual(restored, original)
    # Only the backbone is restored.
    self.assertAllEqual(target.get_layer('classifier').kernel, classifier_kernel)

  def test_checkpoint_prefix_and_matching_count(self):
    source = pretrain_model()
    path = save_like_model_garden(source, os.path.join(self.get_temp_dir(), 'run'))
    target = classifier()
    mismatch = checkpoints.compare_backbone(target.backbone, path)
    self.assertTrue(mismatch.ok)
    self.assertEqual(mismatch.num_matched, len(target.backbone.variables))
    self.assertEqual(checkpoints.restore_backbone(target.backbone, path), path)

  def test_mis_shaped_variables_are_listed(self):
    path = save_like_model_garden(pretrain_model(width_multiplier=0.5), os.path.join(self.get_temp_dir(), 'wide'))
    target = classifier()
    before = [v.numpy() for v in target.backbone.variables]
    with self.assertRaises(errors.UserInputError) as raised:
      checkpoints.restore_backbone(target.backbone, path)
    message = str(raised.exception)
    self.assertIn('task.init_checkpoint', message)
    self.assertIn(f'shape differs ({len(target.backbone.variables)})', message)
    # The stem kernel: 16 filters at width 0.25, 32 at width 0.5.
    self.assertRegex(message, r'stem_conv/kernel:0\): model \[3, 7, 7, 3, 16\], checkpoint \[3, 7, 7, 3, 32\]')
    self.assertIn('... and', message)  # Long listings are capped.
    # Nothing was restored.
    for variable, value in zip(target.backbone.variables, before):
      self.assertAllEqual(variable, value)

  def test_missing_and_unexpected_variables_are_listed(self):
    deeper = save_like_model_garden(pretrain_model(model_id=34), os.path.join(self.get_temp_dir(), 'r34'))
    shallower = save_like_model_garden(pretrain_model(), os.path.join(self.get_temp_dir(), 'r18'))
    # Keras functional models checkpoint their layers by position (layer_with_weights-N): R3D-34 has 16 blocks,
    # R3D-18 8, so R3D-34's blocks 9-16 (positions 10-17) have no counterpart at all.
    target_34 = classifier(model_id=34).backbone
    mismatch = checkpoints.compare_backbone(target_34, shallower)
    self.assertFalse(mismatch.ok)
    # R3D-18's position 4 is res3_block0, which has a projection shortcut; R3D-34's is res2_block2, which has none.
    self.assertIn(('backbone/layer_with_weights-4/_shortcut_conv/kernel', [1, 1, 1, 16, 32]), mismatch.unexpected)
    listed = {path for path, _, _ in mismatch.missing}
    for position in range(10, 18):
      block_paths = {path for path in listed if path.startswith(f'backbone/layer_with_weights-{position}/')}
      self.assertNotEmpty(block_paths, position)
    self.assertEqual(mismatch.num_matched + len(mismatch.missing) + len(mismatch.mis_shaped),
                     len(target_34.variables))
    # In the other direction R3D-34's extra blocks are unexpected.
    target = classifier()
    reverse = checkpoints.compare_backbone(target.backbone, deeper)
    self.assertIn('backbone/layer_with_weights-4/_shortcut_conv/kernel', [path for path, _, _ in reverse.missing])
    self.assertTrue(any(path.startswith('backbone/layer_with_weights-17/') for path, _ in reverse.unexpected))
    with self.assertRaisesRegex(errors.UserInputError, r'in the checkpoint but not in the model \(\d+\)'):
      checkpoints.restore_backbone(target.backbone, deeper)

  def test_checkpoint_without_backbone_is_rejected(self):
    model = pretrain_model()
    path = tf.train.Checkpoint(model=model).save(os.path.join(self.get_temp_dir(), 'plain', 'ckpt'))
    with self.assertRaisesRegex(errors.UserInputError, r'no "backbone" object at its root \(it has: \[.*model'):
      checkpoints.restore_backbone(classifier().backbone, path)

  def test_folder_without_checkpoint_is_rejected(self):
    empty = os.path.join(self.get_temp_dir(), 'empty')
    os.makedirs(empty)
    with self.assertRaisesRegex(errors.UserInputError, 'folder without a checkpoint'):
      checkpoints.restore_backbone(classifier().backbone, empty)

  def test_backbone_only_folder_without_bookkeeping_file(self):
    source = pretrain_model()
    randomize(source, seed=4)
    folder = os.path.join(self.get_temp_dir(), 'release')
    prefix = tf.train.Checkpoint(backbone=source.backbone).save(os.path.join(folder, 'release_backbone'))
    os.remove(os.path.join(folder, 'checkpoint'))  # As an unpacked archive may be: only the checkpoint's files.
    self.assertEqual(checkpoints.resolve_checkpoint(folder), prefix)
    self.assertEqual(checkpoints.checkpoint_layout(prefix), checkpoints.LAYOUT_BACKBONE_ONLY)
    trainer_prefix = save_like_model_garden(pretrain_model(), os.path.join(self.get_temp_dir(), 'run'))
    self.assertEqual(checkpoints.checkpoint_layout(trainer_prefix), checkpoints.LAYOUT_TRAINER)
    self.assertFalse(checkpoints.is_backbone_only(trainer_prefix))
    self.assertFalse(checkpoints.is_backbone_only('/no/such/run'))
    target = classifier()  # The default batch norm is the release's: restored without a warning.
    self.assertEqual(checkpoints.batch_norm_settings(target.backbone), {(0.9, 1e-5)})
    with self.assertLogs(logging.get_absl_logger(), 'INFO') as logs:
      checkpoints.restore_backbone(target.backbone, folder)
    self.assertEqual([line for line in logs.output if line.startswith('WARNING')], [])
    for restored, expected in zip(target.backbone.variables, source.backbone.variables):
      self.assertAllEqual(restored.numpy(), expected.numpy())
    config = backbones.VideoClassifierModel(backbone=_backbone_config())
    config.norm_activation.norm_epsilon = 1e-3
    keras_epsilon = factory_3d.build_model('cvrl_classifier', _INPUT, config, num_classes=3)
    with self.assertLogs(logging.get_absl_logger(), 'WARNING') as logs:
      checkpoints.restore_backbone(keras_epsilon.backbone, folder)
    self.assertTrue(any('epsilon 0.001 differs from the 1e-05' in line for line in logs.output), logs.output)
    # A second checkpoint in the folder makes it ambiguous: the message lists both.
    tf.train.Checkpoint(backbone=source.backbone).save(os.path.join(folder, 'other'))
    os.remove(os.path.join(folder, 'checkpoint'))
    with self.assertRaisesRegex(errors.UserInputError, r"several checkpoints .*\['other-1', 'release_backbone-1'\]"):
      checkpoints.resolve_checkpoint(folder)

  def test_missing_path_is_rejected(self):
    with self.assertRaisesRegex(errors.UserInputError, r"task.init_checkpoint='/no/such/run': no such folder"):
      checkpoints.restore_backbone(classifier().backbone, '/no/such/run')


if __name__ == '__main__':
  tf.test.main()
