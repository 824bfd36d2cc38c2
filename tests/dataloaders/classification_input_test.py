"""Tests of the classification input pipeline on SequenceExamples built with tf.io.encode_jpeg."""
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official_cvrl.dataloaders import classification_input
from official_cvrl.dataloaders import video_decoder
from tests.dataloaders import classification_records as records

_CLIP_FRAMES, _STRIDE = 4, 2
_SPAN = (_CLIP_FRAMES - 1) * _STRIDE + 1  # 7 source frames per clip.


def _parser(**kwargs):
  args = dict(num_frames=_CLIP_FRAMES, temporal_stride=_STRIDE, crop_size=16, num_classes=5)
  args.update(kwargs)
  return classification_input.Parser(**args)


def _parse(record, parser, is_training):
  decoded = video_decoder.Decoder().decode(tf.constant(record))
  return parser.parse_fn(is_training)(decoded)


def _textured_frames(num_frames, height, width):
  """Frames with detail everywhere, so every crop offset gives different pixels."""
  yy, xx = np.mgrid[0:height, 0:width]
  frame = np.stack([xx * 6 % 256, yy * 9 % 256, (xx * yy) % 256], -1).astype(np.uint8)
  return np.stack([frame] * num_frames)


def _decoded_frame(record_frames):
  """What the pipeline decodes: the JPEG round trip of the first frame, uint8 [H, W, 3]."""
  return tf.io.decode_jpeg(tf.io.encode_jpeg(record_frames[0], quality=95), channels=3).numpy()


class TrainParseTest(tf.test.TestCase, parameterized.TestCase):

  def test_one_clip_at_stride_with_random_start_and_label(self):
    record = records.video_record(records.index_coded_frames(20, 24, 32), label=3, video_id='v')
    # Inside tf.data (graph mode), as in training; 200 independent draws.
    dataset = tf.data.Dataset.from_tensors(record).repeat(200).map(video_decoder.Decoder().decode).map(
        _parser().parse_fn(True))
    starts = set()
    for features, labels in dataset:
      self.assertEqual(features['image'].shape, (_CLIP_FRAMES, 16, 16, 3))
      self.assertEqual(features['image'].dtype, tf.uint8)
      self.assertEqual(labels['label'].dtype, tf.int32)
      self.assertEqual(int(labels['label']), 3)
      indices = records.frame_indices(features['image'].numpy())
      np.testing.assert_array_equal(np.diff(indices), _STRIDE)
      starts.add(int(indices[0]))
    # Uniform over the 14 feasible starts 0..20-7: all of them appear in 200 draws (P(miss) < 1e-5).
    self.assertEqual(starts, set(range(20 - _SPAN + 1)))

  def test_flip_mirrors_the_whole_clip(self):
    frames = _textured_frames(8, 24, 32)
    record = records.video_record(frames, label=0)
    # Area 1 at the frame's own aspect ratio: the crop is the whole frame, so only the flip differs.
    kwargs = dict(crop_size=24, crop_area_range=(1.0, 1.0), crop_aspect_ratio_range=(32 / 24, 32 / 24))
    plain, _ = _parse(record, _parser(flip_probability=0.0, **kwargs), True)
    flipped, _ = _parse(record, _parser(flip_probability=1.0, **kwargs), True)
    self.assertAllEqual(flipped['image'], plain['image'][:, :, ::-1, :])
    self.assertNotAllEqual(flipped['image'], plain['image'])


class EvalParseTest(tf.test.TestCase, parameterized.TestCase):

  def test_evenly_spaced_clips_in_clip_major_view_order(self):
    record = records.video_record(records.index_coded_frames(20, 24, 40), label=2)
    features, labels = _parse(record, _parser(crop_size=24, num_test_clips=3, num_test_crops=3), False)
    views = features['image'].numpy()
    self.assertEqual(views.shape, (9, _CLIP_FRAMES, 24, 24, 3))
    self.assertEqual(int(labels['label']), 2)
    # Starts 0, (20 - 7) // 2 = 6 and 13: the first and last clips touch the video's ends.
    expected = {0: [0, 2, 4, 6], 1: [6, 8, 10, 12], 2: [13, 15, 17, 19]}
    for view in range(9):
      np.testing.assert_array_equal(records.frame_indices(views[view]), expected[view // 3])

  @parameterized.named_parameters(
      ('landscape', 24, 40, [(0, 0), (0, 8), (0, 16)]),
      ('portrait', 40, 24, [(0, 0), (8, 0), (16, 0)]),
  )
  def test_three_crops_of_the_short_side(self, height, width, offsets):
    frames = _textured_frames(9, height, width)
    record = records.video_record(frames, label=0)
    features, _ = _parse(record, _parser(crop_size=24, num_test_clips=2, num_test_crops=3), False)
    reference = _decoded_frame(frames)
    views = features['image'].numpy()
    self.assertEqual(views.shape, (6, _CLIP_FRAMES, 24, 24, 3))
    for view in range(6):
      top, left = offsets[view % 3]
      # Crop size = short side: no resize, so the views are exact slices of the decoded frame.
      for t in range(_CLIP_FRAMES):
        self.assertAllEqual(views[view, t], reference[top:top + 24, left:left + 24])

  def test_single_centre_crop_resized(self):
    frames = _textured_frames(7, 24, 40)
    record = records.video_record(frames, label=0)
    features, _ = _parse(record, _parser(crop_size=12, num_test_clips=1, num_test_crops=1), False)
    square = _decoded_frame(frames)[:, 8:32].astype(np.float64)
    # Halving with half-pixel centres samples between pixel pairs: each output is its 2x2 block's mean,
    # rounded half up.
    expected = np.floor(square.reshape(12, 2, 12, 2, 3).mean(axis=(1, 3)) + 0.5).astype(np.uint8)
    views = features['image'].numpy()
    self.assertEqual(views.shape, (1, _CLIP_FRAMES, 12, 12, 3))
    for t in range(_CLIP_FRAMES):
      self.assertAllEqual(views[0, t], expected)

  def test_short_video_loops(self):
    record = records.video_record(records.index_coded_frames(3, 24, 24), label=0)
    features, _ = _parse(record, _parser(crop_size=24, num_test_clips=2), False)
    for view in features['image'].numpy():
      np.testing.assert_array_equal(records.frame_indices(view), [0, 2, 1, 0])  # (0, 2, 4, 6) mod 3.

  def test_eval_is_deterministic(self):
    record = records.video_record(_textured_frames(12, 24, 32), label=0)
    parser = _parser(num_test_clips=2, num_test_crops=3)
    first, _ = _parse(record, parser, False)
    second, _ = _parse(record, parser, False)
    self.assertAllEqual(first['image'], second['image'])


class LabelTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(('too_large', 5), ('negative', -1))
  def test_out_of_range_label_names_the_video(self, label):
    record = records.video_record(records.index_coded_frames(8, 24, 32), label=label, video_id='clips/bad.mp4')
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, r'(?s)outside \[0, 5\).*clips/bad.mp4'):
      _parse(record, _parser(), True)

  def test_unlabeled_video_is_rejected(self):
    record = records.video_record(records.index_coded_frames(8, 24, 32), video_id='nolabel')
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'nolabel'):
      _parse(record, _parser(), False)


class ParserArgumentsTest(tf.test.TestCase):

  def test_bad_crop_count_is_rejected(self):
    with self.assertRaisesRegex(ValueError, 'num_test_crops'):
      _parser(num_test_crops=2)


class PostBatchProcessorTest(tf.test.TestCase):

  def test_views_fold_into_the_batch_video_major(self):
    image = tf.reshape(tf.range(2 * 3 * 1 * 2 * 2 * 3), [2, 3, 1, 2, 2, 3])
    features, labels = classification_input.PostBatchProcessor()({'image': image}, {'label': tf.constant([4, 7])})
    self.assertEqual(features['image'].shape, (6, 1, 2, 2, 3))
    for video in range(2):
      for view in range(3):
        self.assertAllEqual(features['image'][video * 3 + view], image[video, view])
    self.assertAllEqual(labels['label'], [4, 7])

  def test_training_batches_pass_unchanged(self):
    image = tf.zeros([2, 4, 8, 8, 3], tf.uint8)
    features, _ = classification_input.PostBatchProcessor()({'image': image}, {'label': tf.constant([0, 1])})
    self.assertIs(features['image'], image)


if __name__ == '__main__':
  tf.test.main()
