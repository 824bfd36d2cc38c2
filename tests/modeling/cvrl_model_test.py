"""Tests of the CVRL pretraining model, the evaluation classifier, the projection head and their builders.

All models are width-0.25 R3D-18/50 on clips [2, 4, 32, 32, 3]; reference outputs are recomputed in float64
NumPy from the models' own weights.
"""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.modeling import factory_3d
from official_cvrl.configs import backbones as backbones_cfg
from official_cvrl.modeling import cvrl_model
from official_cvrl.modeling import factory
from official_cvrl.modeling.backbones import r3d
from official_cvrl.modeling.heads import projection_head

_SPEC = tf_keras.layers.InputSpec(shape=[None, 4, 32, 32, 3])


def _clip(seed: int) -> tf.Tensor:
  return tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[seed, 0])


def _tiny_backbone(model_id: int = 18, **kwargs) -> r3d.R3D:
  return r3d.R3D(model_id=model_id, width_multiplier=0.25, input_specs=_SPEC, **kwargs)


def _cvrl_config(model_id: int = 18, **head) -> backbones_cfg.CVRLModel:
  config = backbones_cfg.CVRLModel()
  config.backbone.r3d.override({'model_id': model_id, 'width_multiplier': 0.25})
  config.projection_head.override(head)
  return config


def _classifier_config(**fields) -> backbones_cfg.VideoClassifierModel:
  config = backbones_cfg.VideoClassifierModel()
  config.backbone.r3d.override({'model_id': 18, 'width_multiplier': 0.25})
  config.override(fields)
  return config


def _pooled(backbone: tf_keras.Model, x: tf.Tensor) -> np.ndarray:
  """Float64 global average of the backbone's res5 endpoint, [batch, C]."""
  return backbone(x, training=False)['5'].numpy().astype(np.float64).mean(axis=(1, 2, 3))


def _head_reference(head: projection_head.ProjectionHead, x: np.ndarray) -> np.ndarray:
  """The head in inference mode, in float64: BN uses its moving statistics."""
  # pylint: disable=protected-access
  for dense, norm in zip(head._hidden_dense, head._hidden_norms):
    x = x @ dense.kernel.numpy().astype(np.float64)
    x = (x - norm.moving_mean.numpy()) / np.sqrt(norm.moving_variance.numpy() + norm.epsilon)
    x = np.maximum(x * norm.gamma.numpy() + norm.beta.numpy(), 0.0)
  out = head._output_dense
  # pylint: enable=protected-access
  return x @ out.kernel.numpy().astype(np.float64) + out.bias.numpy()


class ProjectionHeadTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(0, 1, 3)
  def test_structure_and_inference_output(self, num_hidden_layers):
    head = projection_head.ProjectionHead(num_hidden_layers=num_hidden_layers, hidden_dim=24, output_dim=8)
    x = tf.random.stateless_normal([5, 16], seed=[1, 1])
    y = head(x, training=False)
    self.assertEqual(y.shape, [5, 8])
    self.assertEqual(head.num_hidden_layers, num_hidden_layers)
    kernels = [v.shape.as_list() for v in head.trainable_variables if 'kernel' in v.name]
    expected, in_dim = [], 16
    for _ in range(num_hidden_layers):
      expected.append([in_dim, 24])
      in_dim = 24
    self.assertEqual(kernels, expected + [[in_dim, 8]])
    # gamma, beta trainable + moving mean/var per hidden layer; hidden Dense have no bias, the output has one.
    self.assertLen(head.variables, 1 + 5 * num_hidden_layers + 1)
    self.assertAllClose(y, _head_reference(head, x.numpy().astype(np.float64)), atol=1e-5)

  def test_training_mode_uses_batch_statistics(self):
    head = projection_head.ProjectionHead(num_hidden_layers=1, hidden_dim=6, output_dim=3, norm_momentum=0.5)
    x = tf.random.stateless_normal([32, 4], seed=[2, 2]) * 3.0 + 1.0
    head(x, training=True)
    # pylint: disable=protected-access
    hidden = x.numpy() @ head._hidden_dense[0].kernel.numpy()
    self.assertAllClose(head._hidden_norms[0].moving_mean, 0.5 * hidden.mean(axis=0), atol=1e-5)
    # pylint: enable=protected-access

  def test_config_round_trip_and_sync_bn(self):
    head = projection_head.ProjectionHead(num_hidden_layers=2, hidden_dim=12, output_dim=4, use_sync_bn=True,
                                          norm_momentum=0.9, norm_epsilon=1e-5, activation='swish')
    clone = projection_head.ProjectionHead.from_config(head.get_config())
    self.assertEqual(clone.get_config(), head.get_config())
    for norm in clone._hidden_norms:  # pylint: disable=protected-access
      self.assertTrue(norm.synchronized)
      self.assertEqual(norm.momentum, 0.9)
      self.assertEqual(norm.epsilon, 1e-5)

  def test_bad_sizes(self):
    with self.assertRaisesRegex(ValueError, 'projection_head.num_hidden_layers'):
      projection_head.ProjectionHead(num_hidden_layers=-1)
    with self.assertRaisesRegex(ValueError, 'projection_head.hidden_dim'):
      projection_head.ProjectionHead(hidden_dim=0)


class CVRLModelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(18, 50)
  def test_outputs_from_registered_builder(self, model_id):
    config = _cvrl_config(model_id)
    model = factory_3d.build_model(config.model_type, _SPEC, config, num_classes=None)
    self.assertIsInstance(model, cvrl_model.CVRLModel)
    x = _clip(1)
    outputs = model(x, training=False)
    num_features = 128 if model_id == 18 else 512
    self.assertEqual(outputs['features'].shape, [2, num_features])
    self.assertEqual(outputs['projection'].shape, [2, 128])
    self.assertEqual(outputs['features'].dtype, tf.float32)
    self.assertEqual(outputs['projection'].dtype, tf.float32)
    # Features are the T, H, W average of res5; the projection is the (unnormalised) head of the features.
    self.assertAllClose(outputs['features'], _pooled(model.backbone, x), atol=1e-5)
    self.assertAllClose(outputs['projection'], _head_reference(model.projection_head, _pooled(model.backbone, x)),
                        atol=1e-4)
    self.assertNotAllClose(np.linalg.norm(outputs['projection'], axis=-1), np.ones(2))
    # Hidden width 2048 is scaled by the backbone's width multiplier 0.25.
    first_hidden = model.projection_head._hidden_dense[0]  # pylint: disable=protected-access
    self.assertEqual(first_hidden.kernel.shape.as_list(), [num_features, 512])
    self.assertEqual(model.projection_head.num_hidden_layers, 3)
    # A feature dict with extra keys (Model Garden's task convention) gives the same outputs.
    from_dict = model({'image': x, 'label': tf.zeros([2])}, training=False)
    self.assertAllClose(from_dict['projection'], outputs['projection'])

  def test_config_fields_reach_the_model(self):
    config = _cvrl_config(num_hidden_layers=1, hidden_dim=64, output_dim=16)
    config.norm_activation.override({'use_sync_bn': False, 'norm_momentum': 0.8, 'norm_epsilon': 1e-4,
                                     'activation': 'swish'})
    model = factory.build_cvrl_model(_SPEC, config)
    self.assertEqual(model(_clip(2), training=False)['projection'].shape, [2, 16])
    head_config = model.projection_head.get_config()
    self.assertEqual((head_config['num_hidden_layers'], head_config['hidden_dim'], head_config['output_dim']),
                     (1, 16, 16))
    norms = [m for m in model.submodules if isinstance(m, tf_keras.layers.BatchNormalization)]
    self.assertLen(norms, 1 + 2 * 8 + 3 + 1)  # Backbone's and the head's.
    for norm in norms:
      self.assertFalse(norm.synchronized)
      self.assertEqual((norm.momentum, norm.epsilon), (0.8, 1e-4))
    self.assertEqual(head_config['activation'], 'swish')
    self.assertEqual(model.backbone.get_config()['activation'], 'swish')
    # Sync BN is the pretraining default.
    self.assertTrue(backbones_cfg.CVRLModel().norm_activation.use_sync_bn)

  def test_wrong_model_type_is_rejected(self):
    config = _cvrl_config()
    config.model_type = 'cvrl_classifier'
    with self.assertRaisesRegex(ValueError, 'task.model.model_type'):
      factory.build_cvrl_model(_SPEC, config)

  def test_get_config_round_trip(self):
    model = cvrl_model.CVRLModel(backbone=_tiny_backbone(), input_specs=_SPEC, num_hidden_layers=2,
                                 hidden_dim=32, output_dim=8)
    clone = cvrl_model.CVRLModel.from_config(model.get_config())
    self.assertEqual(clone.get_config(), model.get_config())
    self.assertEqual(clone.count_params(), model.count_params())
    clone.set_weights(model.get_weights())
    x = _clip(3)
    self.assertAllClose(clone(x, training=False)['projection'], model(x, training=False)['projection'])

  def test_backbone_checkpoint_restores_into_classifier(self):
    pretrain = factory.build_cvrl_model(_SPEC, _cvrl_config())
    pretrain(_clip(4), training=True)  # Moves the BN statistics away from their initial values.
    # Written the way Model Garden's trainer writes it: the model plus its checkpoint items at the root.
    path = tf.train.Checkpoint(model=pretrain, **pretrain.checkpoint_items).write(
        self.get_temp_dir() + '/pretrain')
    classifier = factory.build_video_classifier(_SPEC, _classifier_config(), num_classes=5)
    self.assertFalse(all(np.array_equal(a, b) for a, b in zip(pretrain.backbone.variables,
                                                               classifier.backbone.variables)))
    tf.train.Checkpoint(backbone=classifier.backbone).read(path).expect_partial().assert_existing_objects_matched()
    self.assertLen(classifier.backbone.variables, len(pretrain.backbone.variables))
    for a, b in zip(pretrain.backbone.variables, classifier.backbone.variables):
      self.assertAllEqual(a, b)
    x = _clip(5)
    self.assertAllClose(_pooled(classifier.backbone, x), pretrain(x, training=False)['features'], atol=1e-5)

  def test_jit_compile(self):
    config = _cvrl_config()
    # Batch norm in training mode over a batch of 2 divides by sqrt(variance + epsilon) of two samples: with
    # CVRL's epsilon 1e-5 channels of tiny variance turn rounding noise into O(1) differences, which says nothing
    # about XLA. Keras' 1e-3 keeps the comparison well conditioned.
    config.norm_activation.norm_epsilon = 1e-3
    model = factory.build_cvrl_model(_SPEC, config)
    x = _clip(6)
    compiled = tf.function(lambda clips: model(clips, training=True), jit_compile=True)(x)
    eager = model(x, training=True)
    self.assertEqual(compiled['projection'].shape, [2, 128])
    # XLA fuses and reorders float32 arithmetic; batch norm over a batch of 2 amplifies the rounding differences
    # (measured up to 1.05e-4 on features of magnitude ~1 over unseeded initialisations, hence a relative term).
    self.assertAllClose(compiled['features'], eager['features'], atol=1e-4, rtol=1e-4)
    self.assertAllClose(compiled['projection'], eager['projection'], atol=2e-3, rtol=1e-3)

  def test_mixed_precision_outputs_float32(self):
    tf_keras.mixed_precision.set_global_policy('mixed_bfloat16')
    try:
      model = factory.build_cvrl_model(_SPEC, _cvrl_config())
      classifier = factory.build_video_classifier(_SPEC, _classifier_config(normalize_features=True), 3)
    finally:
      tf_keras.mixed_precision.set_global_policy('float32')
    self.assertEqual(model.backbone.get_layer('stem_conv').compute_dtype, 'bfloat16')
    outputs = model(_clip(7), training=True)
    self.assertEqual(outputs['features'].dtype, tf.float32)
    self.assertEqual(outputs['projection'].dtype, tf.float32)
    self.assertEqual(classifier(_clip(7), training=False).dtype, tf.float32)


class VideoClassifierTest(tf.test.TestCase, parameterized.TestCase):

  def test_standardized_features_are_a_fixed_affine_map_at_inference(self):
    classifier = cvrl_model.VideoClassifier(
        backbone=_tiny_backbone(), num_classes=3, input_specs=_SPEC, normalize_features=True,
        standardize_features=True)
    standardization = classifier.get_layer('feature_standardization')
    self.assertEmpty(standardization.trainable_weights)  # No scale or offset: only the statistics.
    rng = np.random.default_rng(0)
    mean = rng.normal(size=standardization.moving_mean.shape).astype(np.float32)
    variance = rng.uniform(0.5, 2.0, size=standardization.moving_variance.shape).astype(np.float32)
    standardization.moving_mean.assign(mean)
    standardization.moving_variance.assign(variance)
    clips = tf.constant(rng.uniform(size=(2, 4, 32, 32, 3)), tf.float32)
    features = tf_keras.Model(classifier.input, classifier.get_layer('l2_normalize').output)(clips).numpy()
    kernel, bias = [w.numpy().astype(np.float64) for w in classifier.get_layer('classifier').weights]
    expected = ((features - mean) / np.sqrt(variance.astype(np.float64) + standardization.epsilon)) @ kernel + bias
    self.assertAllClose(classifier(clips, training=False), expected, atol=1e-5)

class VideoClassifierOutputsTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(False, True)
  def test_logits_match_reference(self, normalize_features):
    model = factory_3d.build_model(
        'cvrl_classifier', _SPEC, _classifier_config(normalize_features=normalize_features), num_classes=7)
    self.assertIsInstance(model, cvrl_model.VideoClassifier)
    x = _clip(8)
    logits = model(x, training=False)
    self.assertEqual(logits.shape, [2, 7])
    self.assertEqual(logits.dtype, tf.float32)
    features = _pooled(model.backbone, x)
    if normalize_features:
      features /= np.linalg.norm(features, axis=-1, keepdims=True)
      normalized = tf_keras.Model(model.input, model.get_layer('l2_normalize').output)(x, training=False)
      self.assertAllClose(np.linalg.norm(normalized, axis=-1), np.ones(2), atol=1e-6)
    else:
      self.assertNotIn('l2_normalize', [layer.name for layer in model.layers])
    dense = model.get_layer('classifier')
    self.assertAllClose(logits, features @ dense.kernel.numpy() + dense.bias.numpy(), atol=1e-5)

  def test_dropout_rate_is_applied(self):
    x = _clip(9)
    model = factory.build_video_classifier(_SPEC, _classifier_config(dropout_rate=0.5), num_classes=4)
    model.backbone.trainable = False  # Backbone BN in inference mode: only dropout differs with `training`.
    self.assertEqual(model.get_layer('dropout').rate, 0.5)
    self.assertNotAllClose(model(x, training=True), model(x, training=False))
    dropped = tf_keras.Model(model.input, model.get_layer('dropout').output)(x, training=True).numpy()
    pooled = _pooled(model.backbone, x)
    kept = dropped != 0
    self.assertAllClose(dropped[kept], 2.0 * pooled[kept], atol=1e-5)  # Survivors scaled by 1 / (1 - rate).
    self.assertBetween(kept.mean(), 0.3, 0.7)  # 256 Bernoulli(0.5) draws.

    no_dropout = factory.build_video_classifier(_SPEC, _classifier_config(dropout_rate=0.0), num_classes=4)
    no_dropout.backbone.trainable = False
    self.assertAllClose(no_dropout(x, training=True), no_dropout(x, training=False))

  def test_dropout_rate_out_of_range(self):
    with self.assertRaisesRegex(ValueError, 'task.model.dropout_rate'):
      factory.build_video_classifier(_SPEC, _classifier_config(dropout_rate=1.0), num_classes=4)

  def test_get_config_round_trip(self):
    model = cvrl_model.VideoClassifier(backbone=_tiny_backbone(), num_classes=3, input_specs=_SPEC,
                                       dropout_rate=0.3, normalize_features=True)
    clone = cvrl_model.VideoClassifier.from_config(model.get_config())
    self.assertEqual(clone.get_config(), model.get_config())
    clone.set_weights(model.get_weights())
    x = _clip(10)
    self.assertAllClose(clone(x, training=False), model(x, training=False))
    self.assertEqual(model.checkpoint_items, {'backbone': model.backbone})


if __name__ == '__main__':
  tf.test.main()
