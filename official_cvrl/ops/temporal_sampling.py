"""Temporal sampling of CVRL clip pairs (paper Sec. 3.3, "Temporal Augmentation: a sampling perspective", Fig. 3).

Two clips of `num_clip_frames` frames at temporal `stride` are taken from one video. A clip covers
`clip_span = (num_clip_frames - 1) * stride + 1` consecutive source frames. The pretraining sampler first draws the
interval `t` (in source frames) between the two clip starts from P(t) over the feasible range
`[0, num_frames - clip_span]`, then draws the first start uniformly so that the second (`first + t`) still fits.
Decreasing P(t) makes temporally close pairs the common case, which the paper finds best (Fig. 3a).

All functions are pure TensorFlow: they take scalar int tensors (or Python ints) and work eagerly and inside
`tf.data.Dataset.map`. Randomness is stateless: pass `seed` as an int32/int64 `[2]` tensor (or a Python int) for
reproducible draws, or None to draw a fresh seed from TensorFlow's global generator (different every call;
`tf.random.set_seed` makes the sequence reproducible).
"""
from typing import Optional, Union

import tensorflow as tf

DISTRIBUTIONS = ('decreasing', 'uniform', 'increasing')

IntLike = Union[int, tf.Tensor]
SeedLike = Optional[Union[int, tf.Tensor]]


def stateless_seed(seed: SeedLike = None) -> tf.Tensor:
  """Returns a seed for `tf.random.stateless_*` ops.

  Args:
    seed: None (draw one from the global stateful generator, so each call differs), a Python int or int scalar
      tensor (expanded to `[seed, 0]`), or an int32/int64 `[2]` tensor (returned as int64).

  Returns:
    An int64 `[2]` tensor.
  """
  if seed is None:
    return tf.random.uniform([2], minval=0, maxval=tf.int64.max, dtype=tf.int64)
  seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
  if seed.shape.rank == 0:
    return tf.stack([seed, tf.constant(0, tf.int64)])
  return tf.ensure_shape(seed, [2])


def _check_distribution(distribution: str, power: float) -> None:
  if distribution not in DISTRIBUTIONS:
    raise ValueError(f'interval distribution must be one of {DISTRIBUTIONS}, got {distribution!r}.')
  if distribution != 'uniform' and not power > 0:
    raise ValueError(f'interval power must be > 0 for the {distribution!r} distribution, got {power}.')


def _interval_weights_f64(max_interval: IntLike, distribution: str, power: float) -> tf.Tensor:
  """Unnormalised float64 weights of t = 0..max_interval (see `interval_weights`)."""
  _check_distribution(distribution, power)
  if isinstance(max_interval, int) and max_interval < 0:
    raise ValueError(f'max_interval must be >= 0, got {max_interval}.')
  max_interval = tf.maximum(tf.cast(max_interval, tf.int32), 0)
  t = tf.cast(tf.range(max_interval + 1), tf.float64)
  if distribution == 'uniform':
    return tf.ones_like(t)
  t_pow = tf.pow(t, tf.cast(power, tf.float64))
  if distribution == 'decreasing':
    # c = (max_interval + 1)^p: the line -t^p + c would reach 0 just past the feasible range, so every feasible
    # interval, including the longest, keeps a non-zero probability.
    return tf.pow(tf.cast(max_interval, tf.float64) + 1.0, tf.cast(power, tf.float64)) - t_pow
  # Increasing: c = 1 keeps t = 0 (fully overlapping clips) possible.
  return t_pow + 1.0


def interval_weights(max_interval: IntLike, distribution: str = 'decreasing', power: float = 1.0) -> tf.Tensor:
  """The interval distribution P(t) of Fig. 3 over t = 0..max_interval, normalised to sum to 1.

  P(t) ∝ -t^p + c ('decreasing'), c ('uniform') or t^p + c ('increasing'). The constant c is not given in the
  paper; we use
    - decreasing: c = (max_interval + 1)^p, so P(t) would reach 0 at t = max_interval + 1, just past the feasible
      range, and every feasible interval (including the longest) keeps a non-zero probability;
    - increasing: c = 1, so t = 0 stays possible (P(0) = 1 / sum).
  With max_interval = 0 (a video exactly one clip long, or shorter) the result is [1.0].

  Args:
    max_interval: the largest feasible interval `num_frames - clip_span` (Python int or int scalar tensor, >= 0;
      negative tensors are treated as 0).
    distribution: 'decreasing', 'uniform' or 'increasing'.
    power: the exponent p (> 0; ignored for 'uniform').

  Returns:
    float32 `[max_interval + 1]` probabilities of t = 0, 1, ..., max_interval.
  """
  weights = _interval_weights_f64(max_interval, distribution, power)
  return tf.cast(weights / tf.reduce_sum(weights), tf.float32)


def sample_pair_start_indices(num_frames: IntLike,
                              clip_span: IntLike,
                              distribution: str = 'decreasing',
                              power: float = 1.0,
                              temporal_augmentation: bool = True,
                              seed: SeedLike = None) -> tf.Tensor:
  """Draws the start frames of the two clips of a CVRL pair.

  With temporal augmentation: t ~ P(t) over [0, max_interval] (see `interval_weights`), where
  `max_interval = max(num_frames - clip_span, 0)`; then the first start ~ Uniform{0, ..., max_interval - t} and
  the second start = first + t. Without it (the "SA only" ablation of Table 9), both clips start at the same
  uniformly drawn frame. Videos shorter than one clip give starts (0, 0); `clip_frame_indices` then loops them.

  Args:
    num_frames: number of frames of the video (int scalar, >= 0).
    clip_span: source frames covered by one clip, `(num_clip_frames - 1) * stride + 1`.
    distribution: 'decreasing', 'uniform' or 'increasing' (Fig. 3).
    power: exponent p of the distribution.
    temporal_augmentation: False makes both clips start at the same frame.
    seed: see `stateless_seed`.

  Returns:
    int32 `[2]` tensor (first_start, second_start), second_start >= first_start.
  """
  _check_distribution(distribution, power)
  num_frames = tf.cast(num_frames, tf.int32)
  clip_span = tf.cast(clip_span, tf.int32)
  max_interval = tf.maximum(num_frames - clip_span, 0)
  interval_seed, start_seed = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(seed), 2))
  if temporal_augmentation:
    # Inverse-CDF sampling: t is the number of CDF entries <= u, so P(t = k) = cdf[k] - cdf[k - 1].
    cdf = tf.cumsum(_interval_weights_f64(max_interval, distribution, power))
    u = tf.random.stateless_uniform([], interval_seed, dtype=tf.float64) * cdf[-1]
    interval = tf.minimum(tf.reduce_sum(tf.cast(cdf <= u, tf.int32)), max_interval)
  else:
    interval = tf.constant(0, tf.int32)
  first = tf.random.stateless_uniform(
      [], start_seed, minval=0, maxval=max_interval - interval + 1, dtype=tf.int32)
  return tf.stack([first, first + interval])


def shared_frame_count(interval: IntLike, num_clip_frames: int, stride: int) -> tf.Tensor:
  """Number of frames the later clip of a pair shares with the earlier one.

  Clip frames are `start + k * stride`; the later clip starts `interval` frames after the earlier one, so they
  share frames only when the interval is a multiple of the stride: then the last `num_clip_frames - interval /
  stride` frames of the earlier clip are the first ones of the later clip. This also holds for looped (short)
  videos, where frame indices are taken modulo the video length.

  Args:
    interval: second start minus first start (int scalar, >= 0).
    num_clip_frames: frames per clip.
    stride: temporal stride inside a clip.

  Returns:
    int32 scalar in [0, num_clip_frames].
  """
  interval = tf.cast(interval, tf.int32)
  shared = tf.maximum(num_clip_frames - interval // stride, 0)
  return tf.where(interval % stride == 0, shared, 0)


def clip_frame_indices(start: IntLike,
                       num_clip_frames: int,
                       stride: int,
                       num_frames: IntLike,
                       video_id: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Indices of the frames of one clip: `(start + k * stride) mod num_frames` for k = 0..num_clip_frames - 1.

  Videos shorter than the clip span loop (index modulo `num_frames`) instead of failing, as Model Garden's
  samplers do, so a short video gives a clip that replays from its first frame. A video with no frames cannot
  give a clip: it raises `tf.errors.InvalidArgumentError` naming `video_id` when one is given.

  Args:
    start: first frame (int scalar, >= 0).
    num_clip_frames: frames per clip.
    stride: temporal stride.
    num_frames: number of frames of the video.
    video_id: optional string scalar tensor printed in the error message.

  Returns:
    int32 `[num_clip_frames]` frame indices.
  """
  num_frames = tf.cast(num_frames, tf.int32)
  # tf.debugging.Assert (unlike assert_positive in TF 2) can print tensors, so the message names the video.
  data = ['A video has no frames (empty "image/encoded" sequence): drop or re-extract it.']
  if video_id is not None:
    data += ['Video id:', video_id]
  check = tf.debugging.Assert(num_frames > 0, data)
  with tf.control_dependencies([check]):
    indices = tf.cast(start, tf.int32) + tf.range(num_clip_frames, dtype=tf.int32) * stride
    return tf.math.floormod(indices, num_frames)


def evenly_spaced_clip_starts(num_frames: IntLike, clip_span: IntLike, num_clips: int) -> tf.Tensor:
  """Start frames of `num_clips` evaluation clips spread evenly over the video (10-clip x 3-crop testing).

  With several clips the first starts at frame 0 and the last at `num_frames - clip_span`, the rest evenly in
  between (rounded down), so the clips cover the whole video; one clip is the centre clip. Videos shorter than a
  clip give all-zero starts (the clips then loop, see `clip_frame_indices`).

  Args:
    num_frames: number of frames of the video.
    clip_span: `(num_clip_frames - 1) * stride + 1`.
    num_clips: number of clips (Python int >= 1).

  Returns:
    int32 `[num_clips]` start frames.
  """
  if num_clips < 1:
    raise ValueError(f'num_clips must be >= 1, got {num_clips}.')
  max_start = tf.maximum(tf.cast(num_frames, tf.int32) - tf.cast(clip_span, tf.int32), 0)
  if num_clips == 1:
    return tf.reshape(max_start // 2, [1])
  # Integer arithmetic (floor(i * max_start / (n - 1))) keeps the starts exact for any video length.
  return tf.range(num_clips, dtype=tf.int32) * max_start // (num_clips - 1)


def sample_clip_start_indices(num_frames: IntLike,
                              clip_span: IntLike,
                              num_clips: int,
                              distribution: str = 'decreasing',
                              power: float = 1.0,
                              temporal_augmentation: bool = True,
                              seed: SeedLike = None) -> tf.Tensor:
  """Draws the start frames of rho = `num_clips` clips of one video (multi-positive CVRL).

  The clips are ordered in time and the gap between consecutive starts, t_1 .. t_{rho-1}, follows P(t) (see
  `interval_weights`) as closely as the video allows: the gaps are drawn from the joint law of rho - 1 i.i.d.
  draws of P(t) conditioned on fitting, sum_j t_j <= max_interval = max(num_frames - clip_span, 0). That law is
  sampled exactly, gap by gap: with R frames left and k gaps still to draw after this one,

    P(t_j = t | earlier gaps) ∝ P(t) * F_k(R - t),  t = 0..R,

  where F_k is the CDF of the sum of k i.i.d. draws of P(t) (F_0 = 1), obtained by k convolutions. When
  max_interval is much larger than rho times the typical gap, the condition rarely binds and every gap follows
  P(t); in a short video the gaps shrink jointly, never only the last. The first start is then uniform over the
  positions where all clips fit. Every pair of consecutive clips thus has the interval law of a CVRL pair (for
  rho = 2 it is exactly P(t), as `sample_pair_start_indices`, which rho = 2 pipelines keep using).

  Without temporal augmentation all clips start at one uniformly drawn frame.

  Args:
    num_frames: frames of the video (int scalar, >= 0).
    clip_span: source frames covered by one clip.
    num_clips: rho >= 2 (Python int).
    distribution: 'decreasing', 'uniform' or 'increasing' (Fig. 3).
    power: exponent p of the distribution.
    temporal_augmentation: False makes every clip start at the same frame.
    seed: see `stateless_seed`.

  Returns:
    int32 `[num_clips]` non-decreasing start frames.
  """
  _check_distribution(distribution, power)
  if num_clips < 2:
    raise ValueError(f'num_clips must be >= 2, got {num_clips}.')
  num_frames = tf.cast(num_frames, tf.int32)
  max_interval = tf.maximum(num_frames - tf.cast(clip_span, tf.int32), 0)
  seeds = tf.unstack(tf.random.experimental.stateless_split(stateless_seed(seed), num_clips))
  if not temporal_augmentation:
    first = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=max_interval + 1, dtype=tf.int32)
    return tf.fill([num_clips], first)

  size = max_interval + 1
  weights = _interval_weights_f64(max_interval, distribution, power)
  weights /= tf.reduce_sum(weights)
  # Lower-triangular Toeplitz matrix: (convolve @ pmf)[r] = sum_{t <= r} weights[t] * pmf[r - t].
  offsets = tf.range(size)[:, tf.newaxis] - tf.range(size)[tf.newaxis, :]
  convolve = tf.where(offsets >= 0, tf.gather(weights, tf.maximum(offsets, 0)), tf.zeros([], tf.float64))
  sum_pmf = tf.one_hot(0, size, dtype=tf.float64)  # Law of a sum of 0 gaps: always 0.
  cdfs = [tf.ones([size], tf.float64)]  # cdfs[k][r] = P(sum of k gaps <= r); F_0 = 1.
  for _ in range(num_clips - 2):
    sum_pmf = tf.linalg.matvec(convolve, sum_pmf)
    cdfs.append(tf.cumsum(sum_pmf))

  remaining = max_interval
  gaps = []
  t = tf.range(size)
  for j in range(num_clips - 1):
    later = num_clips - 2 - j  # Gaps still to draw after this one.
    feasible = t <= remaining
    probs = tf.where(feasible, weights * tf.gather(cdfs[later], tf.maximum(remaining - t, 0)),
                     tf.zeros([], tf.float64))
    cdf = tf.cumsum(probs)
    u = tf.random.stateless_uniform([], seeds[j + 1], dtype=tf.float64) * cdf[-1]
    gap = tf.minimum(tf.reduce_sum(tf.cast(cdf <= u, tf.int32)), remaining)
    gaps.append(gap)
    remaining -= gap
  first = tf.random.stateless_uniform([], seeds[0], minval=0, maxval=remaining + 1, dtype=tf.int32)
  return first + tf.concat([[0], tf.cumsum(tf.stack(gaps))], axis=0)
