"""Batched colour augmentation of video clips, run on the accelerator inside the train step (paper Algorithm 1).

Algorithm 1 applies, after crop/resize/flip (done on the CPU by `video_augment`), colour jitter with probability
0.8, greyscale with probability 0.2 and Gaussian blur, with every random parameter drawn once per clip and shared
by all its frames (temporal consistency). Here the parameters are drawn for a whole batch at once and broadcast
over frames and pixels, so there is no Python loop over examples, no data-dependent shape and no py_function: the
functions compile with `tf.function(jit_compile=True)`.

Conventions:
  - Inputs and outputs are float32 in [0, 1] (`normalize_images` converts the pipeline's uint8 frames); the
    network sees [0, 1] inputs, as in Model Garden's video_ssl with `zero_centering_image=False`.
  - Colour jitter follows SimCLR v2 (`color_jitter` with strength s): brightness multiplies by a factor in
    [max(0, 1 - 0.8 s), 1 + 0.8 s]; contrast scales each channel's deviation from that frame's channel mean by a
    factor in [max(0, 1 - 0.8 s), 1 + 0.8 s] (`tf.image.adjust_contrast`); saturation scales HSV saturation by a
    factor in [max(0, 1 - 0.8 s), 1 + 0.8 s]; hue shifts HSV hue by a delta in [-0.2 s, 0.2 s] (clamped to 0.5).
    The four are applied in a random order per clip (SimCLR's default; `jitter_random_order=False` uses the fixed
    order brightness, contrast, saturation, hue), clipping to [0, 1] after each.
  - Greyscale uses ITU-R 601 luma weights (`tf.image.rgb_to_grayscale`), replicated to three channels.
  - Gaussian blur follows SimCLR: sigma ~ U[0.1, 2.0], kernel of `2 * ((H // 10) // 2) + 1` taps (23 at 224),
    separable; unlike SimCLR's zero padding we pad by reflection, so borders do not darken.
  - The "no TC" ablation (`per_frame=True`, Table 9) draws every parameter per frame instead of per clip.
  - Clips that skip an augmentation get identity parameters, so the cost does not depend on the probabilities.
  - Frame height must be static (it sets the blur kernel size).
  - Randomness is stateless (see `temporal_sampling.stateless_seed`). A seed reproduces the draws on the same
    kind of device and compilation mode only: XLA and the TF kernels generate different streams from one seed.
"""
from typing import Dict

import tensorflow as tf

from official_cvrl.ops import temporal_sampling

# Identity parameters: a clip whose jitter is not applied (or whose jitter step applies a different transform)
# gets these, so every clip can follow the same batched computation.
_IDENTITY_FACTOR = 1.0
_IDENTITY_HUE = 0.0
_NUM_JITTER_OPS = 4  # Brightness, contrast, saturation, hue: indices into the per-clip order.
_BRIGHTNESS, _CONTRAST, _SATURATION, _HUE = range(_NUM_JITTER_OPS)
_BLUR_SIGMA_RANGE = (0.1, 2.0)


def normalize_images(videos: tf.Tensor) -> tf.Tensor:
  """Converts uint8 frames from the input pipeline to float32 in [0, 1] (the network's input range).

  Args:
    videos: uint8 `[..., H, W, 3]`.

  Returns:
    float32 `[..., H, W, 3]` in [0, 1].
  """
  return tf.cast(videos, tf.float32) * (1.0 / 255.0)


def blur_radius(image_height: int) -> int:
  """Half-width of the Gaussian kernel: SimCLR's kernel size H // 10 made odd (radius 11 at 224)."""
  return (image_height // 10) // 2


def sample_color_params(num_clips: tf.Tensor,
                        *,
                        color_jitter_probability: float = 0.8,
                        color_jitter_strength: float = 1.0,
                        grayscale_probability: float = 0.2,
                        blur_probability: float = 0.5,
                        jitter_random_order: bool = True,
                        seed: temporal_sampling.SeedLike = None) -> Dict[str, tf.Tensor]:
  """Draws the colour augmentation parameters of `num_clips` clips (or frames).

  Args:
    num_clips: number of parameter sets (int scalar).
    color_jitter_probability: probability that a clip is colour-jittered.
    color_jitter_strength: SimCLR's strength s.
    grayscale_probability: probability that a clip is turned grey.
    blur_probability: probability that a clip is blurred.
    jitter_random_order: whether each clip applies the four jitter transforms in its own random order.
    seed: see `temporal_sampling.stateless_seed`.

  Returns:
    A dict of per-clip tensors (identity values where an augmentation is not applied):
      'brightness', 'contrast', 'saturation': float32 `[num_clips]` factors;
      'hue': float32 `[num_clips]` hue deltas;
      'jitter_step': int32 `[num_clips, 4]`, the step (0..3) at which brightness, contrast, saturation and hue are
        applied, a permutation per clip (0, 1, 2, 3 with the fixed order);
      'grayscale': bool `[num_clips]`;
      'blur_sigma': float32 `[num_clips]`, 0 for clips that are not blurred.
  """
  num_clips = tf.cast(num_clips, tf.int32)
  # One draw of 12 uniforms per clip (a single RNG op compiles much faster under XLA than one op per parameter).
  columns = tf.unstack(tf.random.stateless_uniform(
      tf.stack([num_clips, 12]), temporal_sampling.stateless_seed(seed)), axis=1)
  jitter = columns[0] < color_jitter_probability
  amount = 0.8 * color_jitter_strength
  low, high = max(0.0, 1.0 - amount), 1.0 + amount
  hue_amount = min(0.2 * color_jitter_strength, 0.5)

  def jittered(u, low, high, identity):
    return tf.where(jitter, low + (high - low) * u, identity)

  if jitter_random_order:
    step = _ranks(tf.stack(columns[5:9], axis=1))
  else:
    step = tf.tile(tf.range(_NUM_JITTER_OPS)[tf.newaxis], tf.stack([num_clips, 1]))
  blur = columns[10] < blur_probability
  sigma_low, sigma_high = _BLUR_SIGMA_RANGE
  return {
      'brightness': jittered(columns[1], low, high, _IDENTITY_FACTOR),
      'contrast': jittered(columns[2], low, high, _IDENTITY_FACTOR),
      'saturation': jittered(columns[3], low, high, _IDENTITY_FACTOR),
      'hue': jittered(columns[4], -hue_amount, hue_amount, _IDENTITY_HUE),
      'jitter_step': step,
      'grayscale': columns[9] < grayscale_probability,
      'blur_sigma': tf.where(blur, sigma_low + (sigma_high - sigma_low) * columns[11], 0.0),
  }


def _ranks(scores: tf.Tensor) -> tf.Tensor:
  """Rank of each entry within its row (ties broken by position): a uniformly random permutation per row.

  Pairwise comparisons instead of a sort: 4 x 4 per clip, cheap and fast to compile.

  Args:
    scores: float `[N, K]` i.i.d. scores.

  Returns:
    int32 `[N, K]`, each row a permutation of 0..K-1.
  """
  row = scores[:, :, tf.newaxis]  # Entry i.
  other = scores[:, tf.newaxis, :]  # Entry j.
  index = tf.range(scores.shape[1])
  earlier = index[tf.newaxis, :] < index[:, tf.newaxis]  # [i, j]: j < i.
  before = (other < row) | ((other == row) & earlier[tf.newaxis])
  return tf.reduce_sum(tf.cast(before, tf.int32), axis=2)


def _per_clip(values: tf.Tensor) -> tf.Tensor:
  """[N] -> [N, 1, 1, 1, 1], to broadcast against [N, T, H, W, C]."""
  return tf.reshape(values, [-1, 1, 1, 1, 1])


def _adjust_brightness(videos, factor):
  return videos * _per_clip(factor)


def _adjust_contrast(videos, factor):
  # Per frame and channel mean, as tf.image.adjust_contrast computes it for each image.
  mean = tf.reduce_mean(videos, axis=[2, 3], keepdims=True)
  return (videos - mean) * _per_clip(factor) + mean


def _adjust_saturation_hue(videos, saturation_factor, hue_delta):
  """Scales HSV saturation and shifts hue (tf.image.adjust_saturation / adjust_hue, batched)."""
  hue, saturation, value = tf.unstack(tf.image.rgb_to_hsv(videos), axis=-1)
  hue = tf.math.floormod(hue + tf.reshape(hue_delta, [-1, 1, 1, 1]), 1.0)
  saturation = tf.clip_by_value(saturation * tf.reshape(saturation_factor, [-1, 1, 1, 1]), 0.0, 1.0)
  return tf.image.hsv_to_rgb(tf.stack([hue, saturation, value], axis=-1))


def _color_jitter(videos: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool = True) -> tf.Tensor:
  """Applies the four jitter transforms in each clip's order.

  At step i every clip applies the transform whose `jitter_step` is i; the other three transforms get identity
  parameters for that clip, so all clips share one computation per step. With the fixed order this reduces to
  brightness, contrast, saturation, hue.
  """
  step_of_op = params['jitter_step']
  if not random_order:
    # Fixed order (brightness, contrast, saturation, hue): one pass and one HSV round trip, 4x cheaper.
    videos = tf.clip_by_value(_adjust_brightness(videos, params['brightness']), 0.0, 1.0)
    videos = tf.clip_by_value(_adjust_contrast(videos, params['contrast']), 0.0, 1.0)
    return tf.clip_by_value(_adjust_saturation_hue(videos, params['saturation'], params['hue']), 0.0, 1.0)
  for step in range(_NUM_JITTER_OPS):
    def chosen(op, values, identity, step=step):
      return tf.where(tf.equal(step_of_op[:, op], step), values, identity)

    videos = _adjust_brightness(videos, chosen(_BRIGHTNESS, params['brightness'], _IDENTITY_FACTOR))
    videos = tf.clip_by_value(videos, 0.0, 1.0)
    videos = _adjust_contrast(videos, chosen(_CONTRAST, params['contrast'], _IDENTITY_FACTOR))
    videos = tf.clip_by_value(videos, 0.0, 1.0)
    # Saturation and hue share one HSV round trip: a clip applies at most one of them per step.
    videos = _adjust_saturation_hue(videos, chosen(_SATURATION, params['saturation'], _IDENTITY_FACTOR),
                                    chosen(_HUE, params['hue'], _IDENTITY_HUE))
    videos = tf.clip_by_value(videos, 0.0, 1.0)
  return videos


def _grayscale(videos: tf.Tensor, apply: tf.Tensor) -> tf.Tensor:
  gray = tf.image.rgb_to_grayscale(videos)
  return tf.where(_per_clip(apply), tf.broadcast_to(gray, tf.shape(videos)), videos)


def gaussian_kernels(sigma: tf.Tensor, radius: int) -> tf.Tensor:
  """Normalised 1-D Gaussian kernels, one per clip; sigma 0 gives the identity (a unit impulse).

  Args:
    sigma: float32 `[N]` standard deviations in pixels (0 = no blur).
    radius: kernel half-width.

  Returns:
    float32 `[N, 2 * radius + 1]`.
  """
  x = tf.cast(tf.range(-radius, radius + 1), tf.float32)
  safe_sigma = tf.where(sigma > 0, sigma, 1.0)[:, tf.newaxis]
  kernels = tf.exp(-tf.square(x) / (2.0 * tf.square(safe_sigma)))
  kernels /= tf.reduce_sum(kernels, axis=1, keepdims=True)
  impulse = tf.cast(tf.equal(x, 0.0), tf.float32)[tf.newaxis]
  return tf.where(sigma[:, tf.newaxis] > 0, kernels, impulse)


def _gaussian_blur(videos: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian blur with a per-clip kernel, reflection padding.

  Clips are moved into the channel axis so one depthwise convolution applies every clip's own kernel:
  [N, T, H, W, C] -> [T, H, W, N * C].
  """
  radius = blur_radius(videos.shape[2])
  if radius == 0:
    return videos  # Frames under 20 pixels high: SimCLR's kernel degenerates to a single tap.
  shape = tf.shape(videos)
  num_clips, num_frames, height, width = shape[0], shape[1], shape[2], shape[3]
  channels = videos.shape[4]
  kernels = gaussian_kernels(sigma, radius)  # [N, K]
  kernels = tf.repeat(kernels, channels, axis=0)  # [N * C, K]: channel c of clip n uses clip n's kernel.
  stacked = tf.transpose(videos, [1, 2, 3, 0, 4])
  stacked = tf.reshape(stacked, [num_frames, height, width, num_clips * channels])
  stacked = tf.pad(stacked, [[0, 0], [radius, radius], [radius, radius], [0, 0]], mode='REFLECT')
  vertical = tf.transpose(kernels)[:, tf.newaxis, :, tf.newaxis]  # [K, 1, N * C, 1]
  horizontal = tf.transpose(kernels)[tf.newaxis, :, :, tf.newaxis]  # [1, K, N * C, 1]
  stacked = tf.nn.depthwise_conv2d(stacked, vertical, strides=[1, 1, 1, 1], padding='VALID')
  stacked = tf.nn.depthwise_conv2d(stacked, horizontal, strides=[1, 1, 1, 1], padding='VALID')
  stacked = tf.reshape(stacked, [num_frames, height, width, num_clips, channels])
  return tf.transpose(stacked, [3, 0, 1, 2, 4])


def apply_color_params(videos: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool = True) -> tf.Tensor:
  """Applies colour jitter, greyscale and blur with given per-clip parameters (see `sample_color_params`).

  Args:
    videos: float32 `[N, T, H, W, 3]` in [0, 1].
    params: dict of per-clip parameters with leading dimension N.
    random_order: False applies the jitter in the fixed order brightness, contrast, saturation, hue in one pass
      (ignoring `jitter_step`), which is 4x cheaper than the per-clip random order.

  Returns:
    float32 `[N, T, H, W, 3]` in [0, 1].
  """
  videos = _jitter_and_grayscale(videos, params, random_order)
  videos = _gaussian_blur(videos, params['blur_sigma'])
  return tf.clip_by_value(videos, 0.0, 1.0)


def _jitter_and_grayscale_eager(videos: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool) -> tf.Tensor:
  return _grayscale(_color_jitter(videos, params, random_order), params['grayscale'])


# The jitter is ~40 element-wise ops per step over the whole batch (four HSV round trips for the random order).
# Without XLA every op is its own pass over memory; XLA fuses them into a few loops, measured ~8x faster on a CPU
# (docs/benchmarks.md), and it is what a TPU or an XLA-compiled GPU step runs anyway. The blur stays outside:
# XLA's CPU depthwise convolution was ~30x slower than TensorFlow's kernel. Only `apply_color_params` is
# compiled, not the sampling, so a seed draws the same parameters as before.
_jitter_and_grayscale = tf.function(_jitter_and_grayscale_eager, jit_compile=True, reduce_retracing=True)


def augment_clips(videos: tf.Tensor,
                  *,
                  color_jitter_probability: float = 0.8,
                  color_jitter_strength: float = 1.0,
                  grayscale_probability: float = 0.2,
                  blur_probability: float = 0.5,
                  per_frame: bool = False,
                  jitter_random_order: bool = True,
                  seed: temporal_sampling.SeedLike = None) -> tf.Tensor:
  """Colour jitter, greyscale and Gaussian blur of a batch of clips, temporally consistent (Algorithm 1).

  Args:
    videos: float32 `[batch, T, H, W, 3]` in [0, 1] (e.g. `[2 * batch, T, H, W, 3]` from the pair pipeline).
    color_jitter_probability: probability of colour jitter per clip.
    color_jitter_strength: SimCLR strength s (brightness/contrast/saturation 0.8 s, hue 0.2 s).
    grayscale_probability: probability of greyscale per clip.
    blur_probability: probability of Gaussian blur per clip.
    per_frame: draw the parameters per frame instead of per clip (the "no TC" ablation of Table 9).
    jitter_random_order: apply the jitter transforms in a random order per clip (SimCLR) or a fixed order.
    seed: see `temporal_sampling.stateless_seed`; pass one from a `tf.random.Generator` for reproducible runs.

  Returns:
    float32 `[batch, T, H, W, 3]` in [0, 1].
  """
  videos = tf.convert_to_tensor(videos, tf.float32)
  shape = tf.shape(videos)
  static_shape = videos.shape
  if per_frame:
    # Every frame becomes its own one-frame clip, so it draws its own parameters.
    videos = tf.reshape(videos, tf.concat([[shape[0] * shape[1], 1], shape[2:]], axis=0))
    videos.set_shape([None, 1] + static_shape[2:].as_list())
  params = sample_color_params(
      tf.shape(videos)[0],
      color_jitter_probability=color_jitter_probability,
      color_jitter_strength=color_jitter_strength,
      grayscale_probability=grayscale_probability,
      blur_probability=blur_probability,
      jitter_random_order=jitter_random_order,
      seed=seed)
  videos = apply_color_params(videos, params, random_order=jitter_random_order)
  return tf.ensure_shape(tf.reshape(videos, shape), static_shape)
