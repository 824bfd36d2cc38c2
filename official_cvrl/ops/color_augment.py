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
  - Clips that skip a jitter transform or greyscale get identity parameters, so all clips share one batched
    computation. The blur is the exception: large clips (16x224x224) are blurred in a per-clip loop that skips the
    unblurred ones (`tf.cond`, static shapes, so the same code compiles for CPUs, GPUs and TPUs); small clips are
    blurred together, the unblurred ones with a unit impulse.
  - `apply_color_params` is one XLA-compiled function on every device (inlined into an enclosing XLA step). It
    computes the definition above without HSV round trips (closed forms for saturation and hue, contrast once per
    clip; see `_adjust_saturation_hue` and `_jitter_slots`); tests check it against a float64 NumPy/colorsys
    reference of the definition for every jitter order to 1e-5, on both blur paths.
  - Frame height, width and the clip size must be static (they set the blur kernel and the blur path).
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


# The colour steps work on clips laid out channel-planar, [N, 3, T, H, W]: a pixel's three channels are then
# three contiguous planes, so the per-pixel arithmetic that mixes channels (HSV hue and saturation, greyscale)
# vectorises along W. With channels last, XLA's CPU backend split every such step into one loop per channel and
# materialised the shared intermediates (maximum, chroma, hue): ~2.5x slower for the same arithmetic.
_CHANNEL_AXIS = 1
_GRAY_WEIGHTS = (0.2989, 0.5870, 0.1140)  # ITU-R 601, the weights of tf.image.rgb_to_grayscale.
# Clips of at least this many values (16x224x224x3 has 2.4M) are blurred one at a time inside a loop, skipping
# the ones that draw no blur (half of them on average); smaller ones (the demo's 8x32x32 clips, or the one-frame
# clips of `per_frame`) are blurred together, where a loop's per-clip overhead would cost more than it saves.
_MIN_VALUES_TO_SKIP_BLUR = 2**18


def _per_clip(values: tf.Tensor) -> tf.Tensor:
  """[N] -> [N, 1, 1, 1, 1], to broadcast against planar [N, 3, T, H, W]."""
  return tf.reshape(values, [-1, 1, 1, 1, 1])


def _channels(planar: tf.Tensor):
  """[N, 3, T, H, W] -> three [N, 1, T, H, W] planes (red, green, blue)."""
  return planar[:, 0:1], planar[:, 1:2], planar[:, 2:3]


def _adjust_brightness(planar, factor):
  # Factors are >= 0 and values in [0, 1], so clipping to [0, 1] only has to cap at 1.
  return tf.minimum(planar * _per_clip(factor), 1.0)


def _adjust_contrast(planar, factor):
  # Per frame and channel mean, as tf.image.adjust_contrast computes it for each image.
  mean = tf.reduce_mean(planar, axis=[3, 4], keepdims=True)
  return tf.clip_by_value((planar - mean) * _per_clip(factor) + mean, 0.0, 1.0)


def _adjust_saturation_hue(planar, saturation_factor, hue_delta):
  """HSV saturation scaling and hue shift (tf.image.adjust_saturation then adjust_hue) without HSV round trip.

  In HSV a pixel is (hue, S, V) with V = max(r, g, b), chroma C = V - min(r, g, b) and S = C / V; the way back is
  channel = V - C * w(6 * hue + n), n = 5, 3, 1 for red, green, blue, where w(k) = clip(2 - |k mod 6 - 2|, 0, 1)
  is the hexcone's piecewise-linear profile. Scaling S by f with clipping to [0, 1] keeps V and hue and turns C
  into min(f * C, V); shifting the hue keeps V and C. So both need only V, C and the hue in sixths, and they
  commute: one evaluation applies both, in either order. The result lies in [0, V] (C' <= V), so it needs no
  clipping. A grey pixel (C = 0) or black pixel (V = 0) is left unchanged, as the HSV round trip leaves it.

  Args:
    planar: float32 `[N, 3, T, H, W]` in [0, 1].
    saturation_factor: float32 `[N]` (1 = unchanged).
    hue_delta: float32 `[N]`, in turns (0 = unchanged).

  Returns:
    float32 `[N, 3, T, H, W]` in [0, 1].
  """
  red, green, blue = _channels(planar)
  value = tf.maximum(tf.maximum(red, green), blue)
  chroma = value - tf.minimum(tf.minimum(red, green), blue)
  inverse_chroma = 1.0 / tf.where(chroma > 0, chroma, 1.0)
  # Hue in sixths of a turn, in [-1, 5): colorsys's (and tf.image's) sector formula.
  sixths = tf.where(value == red, (green - blue) * inverse_chroma,
                    tf.where(value == green, (blue - red) * inverse_chroma + 2.0,
                             (red - green) * inverse_chroma + 4.0))
  sixths += 6.0 * _per_clip(hue_delta)
  new_chroma = tf.minimum(_per_clip(saturation_factor) * chroma, value)
  channels = []
  for offset in (5.0, 3.0, 1.0):
    k = sixths + offset
    k -= 6.0 * tf.floor(k * (1.0 / 6.0))  # k mod 6; w is continuous across the wrap, so rounding is harmless.
    channels.append(value - new_chroma * tf.clip_by_value(2.0 - tf.abs(k - 2.0), 0.0, 1.0))
  return tf.concat(channels, axis=_CHANNEL_AXIS)


def _jitter_slots(step: tf.Tensor):
  """Where each clip's four transforms go in the sequence X1 B1 X2 C X3 B2 X4 that every clip follows.

  X is a joint saturation/hue step, B brightness, C contrast. Contrast is the only transform that is not per
  pixel (it needs the frame mean), so the sequence has it once: before it, the other three transforms in any
  order fit X B X (saturation and hue commute, so both can share an X when no brightness separates them); after
  it, the same. A transform goes to the first half if it comes before contrast in the clip's order and, within
  a half, to the X before B if it comes before brightness: slot = 2 [after contrast] + [after brightness]. Slots a
  clip does not use get identity parameters. Applying the clip's order step by step gives the same result because
  the transforms that swap places (saturation with hue) commute and the other relative orders are kept.

  Args:
    step: int32 `[N, 4]`, the step of brightness, contrast, saturation and hue (`sample_color_params`).

  Returns:
    (saturation slot, hue slot) int32 `[N]` in 0..3 (X1..X4), and the brightness slot int32 `[N]` in 0..1.
  """
  brightness, contrast, saturation, hue = tf.unstack(step, axis=1)

  def hsv_slot(op_step):
    return 2 * tf.cast(op_step > contrast, tf.int32) + tf.cast(op_step > brightness, tf.int32)

  return hsv_slot(saturation), hsv_slot(hue), tf.cast(brightness > contrast, tf.int32)


def _color_jitter(planar: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool = True) -> tf.Tensor:
  """Applies the four jitter transforms in each clip's order (clipping to [0, 1] after each), batched.

  Every clip follows the same sequence of steps (`_jitter_slots`) with identity parameters where it does not use
  a step, so all clips share one computation: four saturation/hue evaluations, two brightness scalings and one
  contrast, instead of four steps of brightness, contrast and an HSV round trip. The fixed order (brightness,
  contrast, saturation, hue) needs only its three steps.
  """
  if not random_order:
    planar = _adjust_brightness(planar, params['brightness'])
    planar = _adjust_contrast(planar, params['contrast'])
    return _adjust_saturation_hue(planar, params['saturation'], params['hue'])
  saturation_slot, hue_slot, brightness_slot = _jitter_slots(params['jitter_step'])

  def saturation_hue(planar, slot):
    return _adjust_saturation_hue(planar, tf.where(saturation_slot == slot, params['saturation'], _IDENTITY_FACTOR),
                                  tf.where(hue_slot == slot, params['hue'], _IDENTITY_HUE))

  def brightness(planar, slot):
    return _adjust_brightness(planar, tf.where(brightness_slot == slot, params['brightness'], _IDENTITY_FACTOR))

  planar = saturation_hue(planar, 0)
  planar = brightness(planar, 0)
  planar = saturation_hue(planar, 1)
  planar = _adjust_contrast(planar, params['contrast'])
  planar = saturation_hue(planar, 2)
  planar = brightness(planar, 1)
  return saturation_hue(planar, 3)


def _grayscale(planar: tf.Tensor, apply: tf.Tensor) -> tf.Tensor:
  red, green, blue = _channels(planar)
  gray = _GRAY_WEIGHTS[0] * red + _GRAY_WEIGHTS[1] * green + _GRAY_WEIGHTS[2] * blue
  return tf.where(_per_clip(apply), gray, planar)  # The [N, 1, ...] grey plane broadcasts to the three channels.


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


def _separable_blur(planar: tf.Tensor, tap_weight, radius: int) -> tf.Tensor:
  """Blurs the last two axes (H, W) with reflection padding: a sum of shifted copies per axis.

  Shifted copies instead of a convolution: each pass is one fused loop that vectorises along W (XLA's CPU
  convolution was ~30x slower than TensorFlow's kernel, which in turn needs the clips moved into channels).

  Args:
    planar: float32 `[..., H, W]`.
    tap_weight: function of the tap index 0..2 radius returning its weight, broadcastable against `planar`.
    radius: kernel half-width.
  """
  height, width = planar.shape[-2], planar.shape[-1]
  rank = planar.shape.rank
  for axis, size in ((rank - 2, height), (rank - 1, width)):
    paddings = [[0, 0]] * rank
    paddings[axis] = [radius, radius]
    padded = tf.pad(planar, paddings, mode='REFLECT')
    taps = []
    for i in range(2 * radius + 1):
      begin = [0] * rank
      begin[axis] = i
      sizes = [-1] * rank
      sizes[axis] = size
      taps.append(tap_weight(i) * tf.slice(padded, begin, sizes))
    planar = tf.add_n(taps)
  return planar


def _gaussian_blur(planar: tf.Tensor, sigma: tf.Tensor) -> tf.Tensor:
  """Separable Gaussian blur of `[N, 3, T, H, W]` clips with a per-clip sigma (0 = none), reflection padding.

  Large clips go through a loop that blurs only the clips that drew a blur (`tf.cond` per clip: static shapes, so
  it also compiles for TPUs); small ones are blurred all together, the unblurred ones with a unit impulse.
  """
  radius = blur_radius(planar.shape[3])
  if radius == 0:
    return planar  # Frames under 20 pixels high: SimCLR's kernel degenerates to a single tap.
  kernels = gaussian_kernels(sigma, radius)  # [N, K]
  if planar.shape[1:].num_elements() < _MIN_VALUES_TO_SKIP_BLUR:
    # The cond also keeps XLA from fusing the jitter into every tap of the blur (recomputing it 9 times at 32x32).
    return tf.cond(tf.reduce_any(sigma > 0),
                   lambda: _separable_blur(planar, lambda i: _per_clip(kernels[:, i]), radius), lambda: planar)

  def blur_clip(args):
    clip, kernel, clip_sigma = args
    return tf.cond(clip_sigma > 0, lambda: _separable_blur(clip, lambda i: kernel[i], radius), lambda: clip)

  return tf.map_fn(blur_clip, (planar, kernels, sigma), fn_output_signature=tf.float32)


def _apply_color_params_eager(videos: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool) -> tf.Tensor:
  planar = tf.transpose(videos, [0, 4, 1, 2, 3])  # [N, T, H, W, 3] -> [N, 3, T, H, W].
  planar = _grayscale(_color_jitter(planar, params, random_order), params['grayscale'])
  planar = _gaussian_blur(planar, params['blur_sigma'])
  # The jitter and greyscale keep [0, 1] exactly; the clip only removes the blur's rounding, inside its last loop.
  return tf.transpose(tf.clip_by_value(planar, 0.0, 1.0), [0, 2, 3, 4, 1])


# One XLA-compiled function: without XLA every op is its own pass over memory (the jitter is ~100 element-wise
# ops); XLA fuses them into a few loops, and it is what a TPU or an XLA-compiled GPU step runs anyway. Only the
# application is compiled, not the sampling, so a seed draws the same parameters with or without it.
_apply_color_params_xla = tf.function(_apply_color_params_eager, jit_compile=True)


def apply_color_params(videos: tf.Tensor, params: Dict[str, tf.Tensor], random_order: bool = True) -> tf.Tensor:
  """Applies colour jitter, greyscale and blur with given per-clip parameters (see `sample_color_params`).

  Args:
    videos: float32 `[N, T, H, W, 3]` in [0, 1], static shape.
    params: dict of per-clip parameters with leading dimension N.
    random_order: False applies the jitter in the fixed order brightness, contrast, saturation, hue (ignoring
      `jitter_step`), which needs three of the random order's seven steps.

  Returns:
    float32 `[N, T, H, W, 3]` in [0, 1].
  """
  return _apply_color_params_xla(videos, params, random_order)


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
