"""Multi-view testing: several clips x several crops per video, predictions averaged over the views.

The paper's testing protocol (Sec. 4.1, following SlowFast [17]) takes 10 clips evenly spaced in time and 3
crops per clip (squares of the frame's short side at both ends and the centre of the long side, resized to the
test size) and averages the 30 softmax outputs. The functions here are pure TensorFlow and work eagerly and inside
`tf.data.Dataset.map`:

- `clips_frame_indices`: frame indices of evenly spaced clips;
- `decode_frames_once`: decodes every distinct frame of the clips once, even where clips overlap;
- `crop_and_resize_views`: cuts the crop windows from decoded frames and resizes them;
- `crop_test_views`: the protocol's 1 (centre) or 3 spatial views of every clip;
- `average_views`: averages per-view scores into per-video scores.
"""
from typing import Optional, Tuple, Union

import tensorflow as tf

from official_cvrl.ops import temporal_sampling
from official_cvrl.ops import video_augment

TEST_CROP_COUNTS = (1, 3)


def clips_frame_indices(num_frames: temporal_sampling.IntLike, num_clip_frames: int, stride: int, num_clips: int,
                        video_id: Optional[tf.Tensor] = None) -> tf.Tensor:
  """Frame indices of `num_clips` clips evenly spaced over a video (see `evenly_spaced_clip_starts`).

  Args:
    num_frames: frames in the video.
    num_clip_frames: frames per clip.
    stride: temporal stride inside a clip.
    num_clips: clips per video.
    video_id: optional string scalar named in the error raised for a video without frames.

  Returns:
    int32 `[num_clips, num_clip_frames]`; videos shorter than a clip loop.
  """
  clip_span = (num_clip_frames - 1) * stride + 1
  starts = temporal_sampling.evenly_spaced_clip_starts(num_frames, clip_span, num_clips)
  return tf.stack([
      temporal_sampling.clip_frame_indices(starts[i], num_clip_frames, stride, num_frames, video_id=video_id)
      for i in range(num_clips)
  ])


def decode_frames_once(encoded_frames: tf.Tensor, frame_indices: tf.Tensor) -> tf.Tensor:
  """Decodes the JPEG frames `encoded_frames[frame_indices]`, each distinct frame once.

  Evenly spaced test clips overlap when the video is shorter than `num_clips` clip spans (e.g. 10 clips of 64
  frames in a 250-frame Kinetics video), so decoding the distinct frames and gathering saves work.

  Args:
    encoded_frames: string `[N]` JPEG frames of one video, all of the same size.
    frame_indices: int32 `[...]` indices into `encoded_frames`.

  Returns:
    uint8 `[..., H, W, 3]` decoded frames.
  """
  flat = tf.reshape(frame_indices, [-1])
  unique, position = tf.unique(flat)
  decoded = tf.map_fn(lambda encoded: tf.io.decode_jpeg(encoded, channels=3), tf.gather(encoded_frames, unique),
                      fn_output_signature=tf.TensorSpec([None, None, 3], tf.uint8))
  frames = tf.gather(decoded, position)
  return tf.reshape(frames, tf.concat([tf.shape(frame_indices), tf.shape(decoded)[1:]], axis=0))


def crop_and_resize_views(frames: tf.Tensor, windows: tf.Tensor, output_size: Union[int, Tuple[int, int]]
                          ) -> tf.Tensor:
  """Cuts every window out of every clip and resizes it; the crops of one clip are its consecutive views.

  Args:
    frames: uint8 `[num_clips, T, H, W, 3]` decoded clips.
    windows: int32 `[num_crops, 4]` windows (offset_y, offset_x, height, width), e.g. from
      `video_augment.three_crop_windows`.
    output_size: int or (height, width) of the views.

  Returns:
    uint8 `[num_clips * num_crops, T, out_h, out_w, 3]`, ordered clip 0 crop 0, clip 0 crop 1, ...
  """
  size_hw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
  windows = tf.cast(windows, tf.int32)
  num_crops = windows.shape[0]
  if num_crops is None:
    raise ValueError('crop_and_resize_views needs a static number of windows.')
  clips_shape = tf.shape(frames)
  # tf.image.resize takes [N, H, W, C]: fold clips and time together.
  flat = tf.reshape(frames, tf.concat([[-1], clips_shape[2:]], axis=0))
  crops = []
  for i in range(num_crops):
    top, left, height, width = tf.unstack(windows[i])
    crops.append(video_augment.resize_to_uint8(flat[:, top:top + height, left:left + width, :], size_hw))
  views = tf.stack(crops, axis=1)  # [num_clips * T, num_crops, h, w, 3]
  views = tf.reshape(views, [clips_shape[0], clips_shape[1], num_crops, size_hw[0], size_hw[1], frames.shape[-1]])
  views = tf.transpose(views, [0, 2, 1, 3, 4, 5])  # [num_clips, num_crops, T, h, w, 3]
  return tf.reshape(views, [-1, clips_shape[1], size_hw[0], size_hw[1], frames.shape[-1]])


def crop_test_views(clips: tf.Tensor, crop_size: int, num_crops: int) -> tf.Tensor:
  """The testing protocol's spatial views of decoded clips, resized to `crop_size`.

  Args:
    clips: uint8 `[num_clips, T, H, W, 3]`.
    crop_size: side of the square views.
    num_crops: 1, the centre square of the short side, or 3, squares at both ends and the centre of the long
      side (SlowFast's 3-crop testing).

  Returns:
    uint8 `[num_clips * num_crops, T, crop_size, crop_size, 3]`, the crops of a clip adjacent.

  Raises:
    ValueError: when `num_crops` is not 1 or 3.
  """
  if num_crops not in TEST_CROP_COUNTS:
    raise ValueError(f'num_crops must be 1 or 3, got {num_crops}.')
  shape_hw = tf.shape(clips)[2:4]
  if num_crops == 3:
    windows = video_augment.three_crop_windows(shape_hw)
  else:
    windows = video_augment.central_crop_window(shape_hw)[tf.newaxis]
  return crop_and_resize_views(clips, windows, crop_size)


def average_views(scores: tf.Tensor, num_views: int) -> tf.Tensor:
  """Averages the scores of consecutive views of each video.

  Args:
    scores: `[batch * num_views, C]` per-view scores (e.g. softmax probabilities), the views of a video
      consecutive.
    num_views: views per video (Python int >= 1).

  Returns:
    `[batch, C]` per-video mean scores.
  """
  if num_views < 1:
    raise ValueError(f'num_views must be >= 1, got {num_views}.')
  if num_views == 1:
    return scores
  num_classes = scores.shape[-1] if scores.shape[-1] is not None else tf.shape(scores)[-1]
  return tf.reduce_mean(tf.reshape(scores, [-1, num_views, num_classes]), axis=1)
