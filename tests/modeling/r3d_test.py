"""Tests of the CVRL R3D backbone: parameter counts, Table 1 output sizes, options, serialisation and errors.

Full-size models are only built symbolically (Keras functional construction, no forward pass), with zero
kernel initialisers so that allocating 20-40M parameters costs no random-number generation. The deepest
models (101/152/200, 2x) are counted with an independent formula that is checked exactly against the built
R3D-18/34/50 and against Model Garden's ResNet3D.
"""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf
import tf_keras

from official.vision.configs import common
from official.vision.modeling import backbones as mg_backbones
from official.vision.modeling import video_classification_model
from official.vision.modeling.backbones import resnet_3d
from official_cvrl.configs import backbones as backbones_cfg
from official_cvrl.modeling.backbones import r3d

_CLIP_224 = tf_keras.layers.InputSpec(shape=[None, 16, 224, 224, 3])
_CLIP_TINY = tf_keras.layers.InputSpec(shape=[None, 4, 32, 32, 3])

# Exact counts over all variables (trainable + batch norm moving statistics) for a 16x224x224x3 input, measured
# by building each model; they equal `_reference_param_count`. Paper: R3D-50 31.7M, R3D-101 59.7M,
# R3D-152 (2x) 328.0M.
_EXPECTED_PARAMS = {
    (18, 1.0): 20_071_104,
    (34, 1.0): 39_623_872,
    (50, 1.0): 31_725_248,
    (101, 1.0): 59_682_496,
    (152, 1.0): 82_187_968,
    (200, 1.0): 86_693_568,
    (152, 2.0): 328_052_096,
}


def _reference_param_count(model_id: int, width: float, stem_temporal_kernel: int = 5, in_channels: int = 3):
  """Counts R3D variables from the architecture of paper Table 1 (each batch norm holds 4 vectors)."""
  blocks = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3), 50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 152: (3, 8, 36, 3),
            200: (3, 24, 36, 3)}[model_id]
  bottleneck = model_id >= 50
  stem = int(64 * width)
  total = in_channels * stem_temporal_kernel * 7 * 7 * stem + 4 * stem
  channels = stem
  for stage, (base, repeats, kt) in enumerate(zip((64, 128, 256, 512), blocks, (1, 1, 3, 3))):
    f = int(base * width)
    for i in range(repeats):
      stride = 2 if (stage > 0 and i == 0) else 1
      if bottleneck:
        out = 4 * f
        total += channels * f * kt + 4 * f  # [kt, 1, 1] conv + BN.
        total += f * f * 9 + 4 * f  # [1, 3, 3] conv + BN.
        total += f * out + 4 * out  # [1, 1, 1] expansion + BN.
      else:
        out = f
        total += channels * f * kt * 9 + 4 * f  # [kt, 3, 3] conv + BN.
        total += f * f * 9 + 4 * f  # [1, 3, 3] conv + BN.
      if channels != out or stride != 1:
        total += channels * out + 4 * out  # Projection shortcut + BN.
      channels = out
  return total


def _num_variables(model: tf_keras.Model) -> int:
  return sum(int(np.prod(v.shape)) for v in model.variables)


_MODEL_CACHE = {}


def _symbolic_r3d(model_id: int, width: float = 1.0, **kwargs) -> r3d.R3D:
  """Builds (once per configuration) a zero-initialised R3D on a 16x224x224 clip spec, without data."""
  key = (model_id, width, tuple(sorted(kwargs.items())))
  if key not in _MODEL_CACHE:
    _MODEL_CACHE[key] = r3d.R3D(
        model_id=model_id, width_multiplier=width, input_specs=_CLIP_224, kernel_initializer='zeros', **kwargs)
  return _MODEL_CACHE[key]


def _backbone_config(**r3d_kwargs) -> backbones_cfg.Backbone3D:
  return backbones_cfg.Backbone3D(type='r3d', r3d=backbones_cfg.R3D(**r3d_kwargs))


class R3DParamCountTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(18, 34, 50)
  def test_built_model_matches_formula_and_recorded_count(self, model_id):
    model = _symbolic_r3d(model_id)
    self.assertEqual(_num_variables(model), _reference_param_count(model_id, 1.0))
    self.assertEqual(_num_variables(model), _EXPECTED_PARAMS[(model_id, 1.0)])
    self.assertEqual(model.count_params(), _EXPECTED_PARAMS[(model_id, 1.0)])

  def test_small_width_matches_formula(self):
    for model_id in (18, 50):
      model = r3d.R3D(model_id=model_id, width_multiplier=0.25, input_specs=_CLIP_TINY)
      self.assertEqual(_num_variables(model), _reference_param_count(model_id, 0.25))

  def test_r3d50_equals_model_garden_resnet3d_configured_as_cvrl(self):
    mg_model = resnet_3d.ResNet3D(
        model_id=50,
        temporal_strides=[1, 1, 1, 1],
        temporal_kernel_sizes=[(1, 1, 1), (1, 1, 1, 1), (3,) * 6, (3, 3, 3)],
        use_self_gating=None,
        input_specs=_CLIP_224,
        stem_conv_temporal_kernel_size=5,
        stem_conv_temporal_stride=2,
        stem_pool_temporal_stride=1,
        kernel_initializer='zeros')
    ours = _symbolic_r3d(50)
    self.assertEqual(_num_variables(mg_model), 31_725_248)
    self.assertEqual(_num_variables(ours), 31_725_248)
    # Same variables in the same order, not just the same total.
    self.assertEqual([v.shape.as_list() for v in ours.variables], [v.shape.as_list() for v in mg_model.variables])
    self.assertEqual({k: s.as_list() for k, s in ours.output_specs.items()},
                     {k: s.as_list() for k, s in mg_model.output_specs.items()})

  @parameterized.parameters(
      (50, 1.0, 31.7e6),
      (101, 1.0, 59.7e6),
      (152, 2.0, 328.0e6),
  )
  def test_paper_param_counts(self, model_id, width, paper_count):
    count = _reference_param_count(model_id, width)
    self.assertEqual(count, _EXPECTED_PARAMS[(model_id, width)])
    self.assertAllClose(count, paper_count, atol=0.1e6, rtol=0)

  def test_deep_model_counts_recorded(self):
    for (model_id, width), expected in _EXPECTED_PARAMS.items():
      self.assertEqual(_reference_param_count(model_id, width), expected, msg=f'R3D-{model_id} {width}x')


class R3DArchitectureTest(tf.test.TestCase, parameterized.TestCase):

  def test_table1_output_sizes(self):
    model = _symbolic_r3d(50)
    self.assertEqual(model.get_layer('stem_conv').output.shape.as_list(), [None, 8, 112, 112, 64])
    self.assertEqual(model.get_layer('stem_pool').output.shape.as_list(), [None, 8, 56, 56, 64])
    expected = {'2': [None, 8, 56, 56, 256], '3': [None, 8, 28, 28, 512], '4': [None, 8, 14, 14, 1024],
                '5': [None, 8, 7, 7, 2048]}
    self.assertEqual({k: s.as_list() for k, s in model.output_specs.items()}, expected)
    self.assertEqual({k: t.shape.as_list() for k, t in model.output.items()}, expected)
    self.assertEqual(model.num_features, 2048)

  def test_double_width_doubles_every_channel_count(self):
    base, wide = _symbolic_r3d(50), _symbolic_r3d(50, 2.0)
    self.assertEqual(wide.get_layer('stem_conv').output.shape[-1], 128)
    for level in ('2', '3', '4', '5'):
      self.assertEqual(wide.output_specs[level][:-1], base.output_specs[level][:-1])
      self.assertEqual(wide.output_specs[level][-1], 2 * base.output_specs[level][-1])
    self.assertEqual(wide.num_features, 4096)
    # Every convolution kernel doubles its output channels (and its input channels, except the stem's RGB).
    base_convs = [v for v in base.variables if v.shape.rank == 5]
    wide_convs = [v for v in wide.variables if v.shape.rank == 5]
    self.assertLen(wide_convs, len(base_convs))
    for b, w in zip(base_convs, wide_convs):
      self.assertEqual(w.shape[-1], 2 * b.shape[-1])
      self.assertEqual(w.shape[-2], b.shape[-2] if b.shape[-2] == 3 else 2 * b.shape[-2])

  def test_stem_and_temporal_kernels(self):
    model = _symbolic_r3d(50)
    self.assertEqual(model.get_layer('stem_conv').kernel.shape.as_list(), [5, 7, 7, 3, 64])
    self.assertEqual(model.get_layer('stem_conv').strides, (2, 2, 2))
    self.assertEqual(model.get_layer('stem_pool').pool_size, (1, 3, 3))
    self.assertEqual(model.get_layer('stem_pool').strides, (1, 2, 2))
    for level, repeats, kt in ((2, 3, 1), (3, 4, 1), (4, 6, 3), (5, 3, 3)):
      for i in range(repeats):
        block = model.get_layer(f'res{level}_block{i}')
        self.assertEqual(block.get_config()['temporal_kernel_size'], kt)
        self.assertEqual(block.get_config()['temporal_strides'], 1)
        self.assertEqual(block.get_config()['spatial_strides'], 2 if (i == 0 and level > 2) else 1)

  def test_basic_block_first_conv_kernels(self):
    model = _symbolic_r3d(18)
    # pylint: disable=protected-access
    for level, kt in ((2, 1), (3, 1), (4, 3), (5, 3)):
      for i in range(2):
        block = model.get_layer(f'res{level}_block{i}')
        self.assertEqual(block._conv_a.kernel.shape.as_list()[:3], [kt, 3, 3])
        self.assertEqual(block._conv_b.kernel.shape.as_list()[:3], [1, 3, 3])
        self.assertEqual(block._conv_a.strides, (1, 2, 2) if (i == 0 and level > 2) else (1, 1, 1))
    # pylint: enable=protected-access
    self.assertEqual(model.output_specs['5'].as_list(), [None, 8, 7, 7, 512])
    self.assertEqual(model.num_features, 512)

  def test_stem_options_reach_the_stem(self):
    model = r3d.R3D(model_id=18, width_multiplier=0.25, stem_conv_temporal_kernel_size=3,
                    stem_conv_temporal_stride=1, input_specs=_CLIP_TINY)
    self.assertEqual(model.get_layer('stem_conv').kernel.shape.as_list(), [3, 7, 7, 3, 16])
    self.assertEqual(model.output_specs['5'].as_list(), [None, 4, 1, 1, 128])

  def test_res5_dilation_keeps_res4_spatial_size(self):
    model = _symbolic_r3d(50, res5_dilation=2)
    self.assertEqual(model.output_specs['4'].as_list(), [None, 8, 14, 14, 1024])
    self.assertEqual(model.output_specs['5'].as_list(), [None, 8, 14, 14, 2048])
    spatial_conv = model.get_layer('res5_block0')._spatial_conv  # pylint: disable=protected-access
    self.assertEqual(spatial_conv.dilation_rate, (1, 2, 2))
    # Same variables as the undilated network, so pretrained weights transfer.
    self.assertEqual([v.shape.as_list() for v in model.variables],
                     [v.shape.as_list() for v in _symbolic_r3d(50).variables])

  @parameterized.parameters(18, 50)
  def test_undilated_checkpoint_restores_into_dilated_backbone(self, model_id):
    plain = r3d.R3D(model_id=model_id, width_multiplier=0.25, input_specs=_CLIP_TINY)
    dilated = r3d.R3D(model_id=model_id, width_multiplier=0.25, res5_dilation=2, input_specs=_CLIP_TINY)
    path = tf.train.Checkpoint(backbone=plain).write(self.get_temp_dir() + f'/plain{model_id}')
    tf.train.Checkpoint(backbone=dilated).read(path).assert_consumed()
    for a, b in zip(plain.variables, dilated.variables):
      self.assertAllEqual(a, b)
    self.assertEqual(dilated.output_specs['5'].as_list(), [None, 2, 2, 2, 128 if model_id == 18 else 512])
    if model_id == 18:  # One real forward pass through a dilated res5 (dilated 3D convolutions are slow on CPU).
      x = tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[1, 2])
      out_plain, out_dilated = plain(x, training=False), dilated(x, training=False)
      self.assertAllClose(out_plain['4'], out_dilated['4'])
      self.assertEqual(out_dilated['5'].shape, [2, 2, 2, 2, 128])
    # The res5 1x3x3 convolution really computes with dilation 2: float64 NumPy reference with 'same' padding.
    block = dilated.get_layer('res5_block1')
    conv = block._conv_b if model_id == 18 else block._spatial_conv  # pylint: disable=protected-access
    kernel = conv.kernel.numpy().astype(np.float64)[0]  # [3, 3, C_in, C_out].
    features = np.random.default_rng(0).normal(size=[1, 2, 5, 5, kernel.shape[-2]])
    padded = np.pad(features, [(0, 0), (0, 0), (2, 2), (2, 2), (0, 0)])
    expected = sum(padded[:, :, 2 * i:2 * i + 5, 2 * j:2 * j + 5] @ kernel[i, j] for i in range(3) for j in range(3))
    self.assertAllClose(conv(tf.constant(features, tf.float32)), expected, atol=1e-4)

  def test_stem_max_pool_off_doubles_res2_spatial_size(self):
    with_pool = r3d.R3D(model_id=18, width_multiplier=0.25, input_specs=_CLIP_TINY)
    without_pool = r3d.R3D(model_id=18, width_multiplier=0.25, stem_max_pool=False, input_specs=_CLIP_TINY)
    self.assertEqual(with_pool.output_specs['2'].as_list(), [None, 2, 8, 8, 16])
    self.assertEqual(without_pool.output_specs['2'].as_list(), [None, 2, 16, 16, 16])
    self.assertEqual(without_pool.output_specs['5'].as_list(), [None, 2, 2, 2, 128])

  @parameterized.parameters(18, 50)
  def test_tiny_forward_pass(self, model_id):
    model = r3d.R3D(model_id=model_id, width_multiplier=0.25, input_specs=_CLIP_TINY)
    x = tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[3, 4])
    outputs = model(x, training=True)
    channels = (16, 32, 64, 128) if model_id == 18 else (64, 128, 256, 512)
    sizes = (8, 4, 2, 1)
    for level, c, s in zip(('2', '3', '4', '5'), channels, sizes):
      self.assertEqual(outputs[level].shape, [2, 2, s, s, c])
      self.assertAllGreaterEqual(outputs[level], 0.0)  # Every block ends with a ReLU.
      self.assertTrue(np.all(np.isfinite(outputs[level].numpy())))
    # The forward pass in training mode updated the batch norm moving averages.
    moving_mean = model.get_layer('stem_bn').moving_mean
    self.assertNotAllClose(moving_mean, tf.zeros_like(moving_mean))

  def test_get_config_round_trip(self):
    model = r3d.R3D(model_id=18, width_multiplier=0.25, stem_max_pool=False, res5_dilation=2,
                    input_specs=_CLIP_TINY, norm_momentum=0.9)
    clone = r3d.R3D.from_config(model.get_config())
    self.assertEqual(clone.get_config(), model.get_config())
    clone.set_weights(model.get_weights())
    x = tf.random.stateless_uniform([2, 4, 32, 32, 3], seed=[5, 6])
    self.assertAllClose(clone(x, training=False)['5'], model(x, training=False)['5'])
    block = model.get_layer('res3_block0')
    self.assertEqual(r3d.BasicBlock3D.from_config(block.get_config()).get_config(), block.get_config())
    dilated = r3d.DilatedBottleneckBlock3D(spatial_dilation_rate=2, filters=8, temporal_kernel_size=3,
                                           temporal_strides=1, spatial_strides=1)
    self.assertEqual(r3d.DilatedBottleneckBlock3D.from_config(dilated.get_config()).get_config(),
                     dilated.get_config())

  def test_model_garden_video_classification_model_accepts_r3d(self):
    backbone = r3d.R3D(model_id=18, width_multiplier=0.25, input_specs=_CLIP_TINY)
    model = video_classification_model.VideoClassificationModel(
        backbone=backbone, num_classes=5, input_specs={'image': _CLIP_TINY})
    logits = model({'image': tf.zeros([2, 4, 32, 32, 3])}, training=False)
    self.assertEqual(logits.shape, [2, 5])


class R3DBuilderTest(tf.test.TestCase, parameterized.TestCase):

  def test_registered_builder_passes_every_field(self):
    backbone_config = _backbone_config(model_id=18, width_multiplier=0.5, stem_conv_temporal_kernel_size=3,
                                       stem_conv_temporal_stride=1, stem_max_pool=False, res5_dilation=2)
    norm = common.NormActivation(activation='swish', use_sync_bn=True, norm_momentum=0.9, norm_epsilon=1e-5)
    model = mg_backbones.factory.build_backbone(
        input_specs=_CLIP_TINY, backbone_config=backbone_config, norm_activation_config=norm,
        l2_regularizer=tf_keras.regularizers.L2(1e-4))
    self.assertIsInstance(model, r3d.R3D)
    config = model.get_config()
    for key, value in backbone_config.r3d.as_dict().items():
      self.assertEqual(config[key], value, msg=key)
    self.assertEqual(model.get_layer('stem_conv').kernel.shape.as_list(), [3, 7, 7, 3, 32])
    self.assertEqual(model.output_specs['2'].as_list(), [None, 4, 16, 16, 32])
    self.assertEqual(model.output_specs['5'].as_list(), [None, 4, 4, 4, 256])
    norms = [m for m in model.submodules if isinstance(m, tf_keras.layers.BatchNormalization)]
    self.assertLen(norms, 1 + 2 * 8 + 3)  # Stem, two per block, three projection shortcuts.
    for layer in norms:
      self.assertTrue(layer.synchronized)
      self.assertEqual(layer.momentum, 0.9)
      self.assertEqual(layer.epsilon, 1e-5)
    self.assertEqual(model.get_layer('res2_block0')._activation, 'swish')  # pylint: disable=protected-access
    self.assertEqual(config['activation'], 'swish')
    # The L2 regulariser reaches every convolution kernel.
    num_kernels = len([v for v in model.trainable_variables if v.shape.rank == 5])
    self.assertLen(model.losses, num_kernels)

  def test_yaml_style_override_selects_r3d(self):
    config = backbones_cfg.Backbone3D()
    config.override({'type': 'r3d', 'r3d': {'model_id': 101, 'width_multiplier': 2.0}})
    self.assertEqual(config.get().model_id, 101)
    self.assertEqual(config.get().width_multiplier, 2.0)
    config.override({'type': 'resnet_3d'})
    self.assertEqual(config.get().model_id, 50)  # Model Garden's branch remains available.

  @parameterized.named_parameters(
      ('model_id', dict(model_id=42), _CLIP_TINY, 'r3d.model_id'),
      ('width', dict(width_multiplier=0.3), _CLIP_TINY, 'r3d.width_multiplier'),
      ('negative_width', dict(width_multiplier=-1.0), _CLIP_TINY, 'r3d.width_multiplier'),
      ('dilation', dict(res5_dilation=4), _CLIP_TINY, 'r3d.res5_dilation'),
      ('stem', dict(stem_conv_temporal_stride=0), _CLIP_TINY, 'stem_conv_temporal_stride'),
      ('rank', {}, tf_keras.layers.InputSpec(shape=[None, 32, 32, 3]), 'rank 5'),
      ('channels', {}, tf_keras.layers.InputSpec(shape=[None, 4, 32, 32, None]), 'feature_shape'),
      ('too_small', {}, tf_keras.layers.InputSpec(shape=[None, 4, 16, 16, 3]), 'r3d.stem_max_pool'),
  )
  def test_bad_settings_raise_naming_the_key(self, kwargs, input_specs, message):
    with self.assertRaisesRegex(ValueError, message):
      r3d.R3D(input_specs=input_specs, **{'model_id': 18, 'width_multiplier': 0.25, **kwargs})

  def test_small_input_accepted_without_pool(self):
    model = r3d.R3D(model_id=18, width_multiplier=0.25, stem_max_pool=False,
                    input_specs=tf_keras.layers.InputSpec(shape=[None, 4, 16, 16, 3]))
    self.assertEqual(model.output_specs['5'].as_list(), [None, 2, 1, 1, 128])


if __name__ == '__main__':
  tf.test.main()
