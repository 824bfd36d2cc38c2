"""End-to-end tests of the pretraining input pipeline on SequenceExamples built here with tf.io.encode_jpeg."""
import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from official.core import config_definitions as cfg
from official.core import input_reader
from official.vision.dataloaders import video_input
from official_cvrl.dataloaders import feature_keys
from official_cvrl.dataloaders import ssl_input
from official_cvrl.dataloaders import video_decoder
from official_cvrl.ops import window_resize

_HEIGHT, _WIDTH, _CROP = 24, 32, 16
_CLIP_FRAMES, _STRIDE = 4, 2
_VALUE_STEP = 10  # Frame i of an index-coded video is the constant colour 10 * i.


def _record(frames, labels=None, video_id=None, metadata=None):
  """A serialized SequenceExample with one JPEG per frame (and, optionally, labels, id and metadata)."""
  example = tf.train.SequenceExample()
  frame_list = example.feature_lists.feature_list[feature_keys.IMAGE_KEY]  # Exists even with no frames.
  for frame in frames:
    frame_list.feature.add().bytes_list.value.append(tf.io.encode_jpeg(frame, quality=95).numpy())
  context = example.context.feature
  if labels is not None:
    context[feature_keys.LABEL_INDEX_KEY].int64_list.value.extend(labels)
  if video_id is not None:
    context[feature_keys.VIDEO_ID_KEY].bytes_list.value.append(video_id.encode())
  for key, value in (metadata or {}).items():
    if isinstance(value, float):
      context[key].float_list.value.append(value)
    else:
      context[key].int64_list.value.append(value)
  return example.SerializeToString()


def _index_coded_frames(num_frames):
  """Flat frames whose colour encodes their index, so the sampled indices can be read back from pixels."""
  return np.stack([np.full((_HEIGHT, _WIDTH, 3), _VALUE_STEP * i, np.uint8) for i in range(num_frames)])


def _textured_frame():
  yy, xx = np.mgrid[0:_HEIGHT, 0:_WIDTH]
  return np.stack([xx * 8, yy * 10, (xx * yy) % 256], -1).astype(np.uint8)


def _frame_indices(clip):
  """[T, S, S, 3] uint8 clip of index-coded frames -> [T] frame indices."""
  return np.round(clip.reshape(clip.shape[0], -1).mean(axis=1) / _VALUE_STEP).astype(int)


def _parser(**kwargs):
  args = dict(num_frames=_CLIP_FRAMES, temporal_stride=_STRIDE, crop_size=_CROP)
  args.update(kwargs)
  return ssl_input.Parser(**args)


def _parse(record, parser=None, is_training=True):
  decoded = video_decoder.Decoder().decode(tf.constant(record))
  return (parser or _parser()).parse_fn(is_training)(decoded)


class DecoderTest(tf.test.TestCase):

  def test_decodes_frames_labels_and_metadata(self):
    record = _record(_index_coded_frames(3), labels=[7, 2], video_id='abc/def.mp4',
                     metadata={feature_keys.FPS_KEY: 12.5, feature_keys.NUM_FRAMES_KEY: 3})
    decoded = video_decoder.Decoder().decode(tf.constant(record))
    self.assertEqual(decoded[feature_keys.IMAGE_KEY].shape, [3])
    self.assertAllEqual(decoded[feature_keys.LABEL_INDEX_KEY], [7, 2])
    self.assertEqual(decoded[feature_keys.VIDEO_ID_KEY], b'abc/def.mp4')
    self.assertAllClose(decoded[feature_keys.FPS_KEY], 12.5)
    self.assertEqual(decoded[feature_keys.NUM_FRAMES_KEY], 3)

  def test_missing_optional_keys_get_defaults(self):
    decoded = video_decoder.Decoder().decode(tf.constant(_record(_index_coded_frames(2))))
    self.assertEqual(decoded[feature_keys.LABEL_INDEX_KEY].shape, [0])
    self.assertEqual(decoded[feature_keys.VIDEO_ID_KEY], b'')
    for key in (feature_keys.FPS_KEY, feature_keys.SOURCE_FPS_KEY, feature_keys.NUM_FRAMES_KEY,
                feature_keys.HEIGHT_KEY, feature_keys.WIDTH_KEY, feature_keys.START_TIMESTAMP_KEY,
                feature_keys.END_TIMESTAMP_KEY):
      self.assertEqual(decoded[key], -1, msg=key)

  def test_model_garden_decoder_reads_the_same_records(self):
    record = tf.constant(_record(_index_coded_frames(3), labels=[5], video_id='v'))
    ours = video_decoder.Decoder().decode(record)
    theirs = video_input.Decoder().decode(record)
    self.assertAllEqual(theirs[video_input.IMAGE_KEY], ours[feature_keys.IMAGE_KEY])
    self.assertAllEqual(theirs[video_input.LABEL_KEY], ours[feature_keys.LABEL_INDEX_KEY])


class ParserTest(tf.test.TestCase, parameterized.TestCase):

  def test_output_shapes_dtypes_and_labels(self):
    features, labels = _parse(_record(_index_coded_frames(20), labels=[3, 9]))
    self.assertEqual(features['image'].shape, [2, _CLIP_FRAMES, _CROP, _CROP, 3])
    self.assertEqual(features['image'].dtype, tf.uint8)
    self.assertEqual(labels['label'].dtype, tf.int32)
    self.assertEqual(labels['label'], 3)  # The first class of a multi-label video.
    _, labels = _parse(_record(_index_coded_frames(20)))
    self.assertEqual(labels['label'], feature_keys.UNLABELED_INDEX)

  def test_sampled_frames_follow_interval_sampling(self):
    num_frames = 24
    parser = _parser()
    max_start = num_frames - parser.clip_span
    dataset = tf.data.Dataset.from_tensors(_record(_index_coded_frames(num_frames))).repeat(30).map(
        video_decoder.Decoder().decode).map(parser.parse_fn(True))
    intervals = []
    for features, _ in dataset:
      first, second = (_frame_indices(clip) for clip in features['image'].numpy())
      for clip in (first, second):
        self.assertAllEqual(np.diff(clip), [_STRIDE] * (_CLIP_FRAMES - 1))
        self.assertBetween(clip[0], 0, max_start)
      self.assertGreaterEqual(second[0], first[0])
      intervals.append(second[0] - first[0])
    self.assertGreater(len(set(intervals)), 3)

  def test_short_video_loops(self):
    features, _ = _parse(_record(_index_coded_frames(5)))
    for clip in features['image'].numpy():
      self.assertAllEqual(_frame_indices(clip), [0, 2, 4, 1])

  def test_empty_video_raises_naming_it(self):
    with self.assertRaisesRegex(tf.errors.InvalidArgumentError, 'no frames(.|\n)*clips/empty_one'):
      _parse(_record([], video_id='clips/empty_one'))

  @parameterized.parameters(True, False)
  def test_temporal_consistency_of_crop_and_flip(self, temporally_consistent):
    # All frames are the same textured image: only the spatial augmentation can make output frames differ.
    frames = np.stack([_textured_frame()] * 12)
    tf.random.set_seed(1)
    parser = _parser(temporally_consistent=temporally_consistent, crop_area_range=(0.2, 0.5))
    images = _parse(_record(frames), parser)[0]['image'].numpy()
    for clip in images:
      same_as_first = [np.array_equal(frame, clip[0]) for frame in clip]
      if temporally_consistent:
        self.assertTrue(all(same_as_first))
      else:
        self.assertFalse(all(same_as_first[1:]))
    self.assertFalse(np.array_equal(images[0], images[1]))  # Each clip has its own crop.

  def test_without_spatial_augmentation_central_crop(self):
    frames = np.stack([_textured_frame()] * 12)
    parser = _parser(spatial_augmentation=False, temporal_augmentation=False)
    images = _parse(_record(frames), parser)[0]['image'].numpy()
    decoded = tf.io.decode_jpeg(tf.io.encode_jpeg(frames[0], quality=95)).numpy()
    offset = (_WIDTH - _HEIGHT) // 2
    expected = tf.cast(tf.image.resize(decoded[:, offset:offset + _HEIGHT], [_CROP, _CROP]) + 0.5, tf.uint8)
    for clip in images:
      for frame in clip:
        self.assertAllEqual(frame, expected)

  def test_without_temporal_augmentation_clips_start_together(self):
    parser = _parser(temporal_augmentation=False, spatial_augmentation=False)
    for _ in range(3):
      first, second = _parse(_record(_index_coded_frames(24)), parser)[0]['image'].numpy()
      self.assertAllEqual(_frame_indices(first), _frame_indices(second))

  def test_evaluation_is_deterministic_per_video(self):
    record = _record(np.stack([_textured_frame()] * 20), video_id='v1')
    parser = _parser()
    first = _parse(record, parser, is_training=False)[0]['image']
    self.assertAllEqual(first, _parse(record, parser, is_training=False)[0]['image'])
    other_video = _record(np.stack([_textured_frame()] * 20), video_id='v2')
    self.assertNotAllEqual(first, _parse(other_video, parser, is_training=False)[0]['image'])

  def test_rejects_bad_arguments(self):
    with self.assertRaisesRegex(ValueError, 'one of'):
      _parser(interval_distribution='exponential')
    with self.assertRaisesRegex(ValueError, 'flip_probability'):
      _parser(flip_probability=1.5)


def _canvas_batch(record, parser, is_training=True):
  """One record through the parser, its canvas batching (batch 1) and the PostBatchProcessor."""
  dataset = tf.data.Dataset.from_tensors(tf.constant(record)).map(video_decoder.Decoder().decode)
  dataset = parser.canvas_batch_fn(1)(dataset.map(parser.parse_fn(is_training)))
  return ssl_input.PostBatchProcessor()(*next(iter(dataset)))


class CanvasTest(tf.test.TestCase, parameterized.TestCase):
  """With a canvas the CPU ships uncut windows; resizing them on the accelerator gives the CPU path's clips."""

  @parameterized.parameters((2, (_HEIGHT, _WIDTH)), (3, (_HEIGHT, _WIDTH)), (2, (_CROP, 20)), (3, (_CROP, 20)))
  def test_resize_on_the_accelerator_gives_the_cpu_path_clips(self, num_clips, canvas_size):
    # Evaluation parsing seeds every draw with the video, so both parsers draw the same windows and flips. The
    # (16, 20) canvas is smaller than many windows of the 24x32 frames: those are resized on the CPU.
    for index in range(4):
      record = _record(np.stack([np.roll(_textured_frame(), 3 * t, axis=1) for t in range(14)]),
                       video_id=f'v{index}')
      cpu = _parse(record, _parser(num_clips=num_clips), is_training=False)[0]['image'].numpy()
      features, labels = _canvas_batch(record, _parser(num_clips=num_clips, canvas_size=canvas_size), False)
      self.assertEqual(sorted(features), ['flip', 'image', 'window_size'])
      self.assertEqual(features['image'].shape, (num_clips, _CLIP_FRAMES) + canvas_size + (3,))
      self.assertEqual(features['window_size'].shape, (num_clips, 2))
      self.assertEqual(labels['label'].shape, (1,))
      got = window_resize.resize_windows(features['image'], features['window_size'], features['flip'], _CROP)
      difference = np.abs(got.numpy().astype(int) - cpu.astype(int))
      self.assertLessEqual(difference.max(), 1)  # Rounding ties only (tests/ops/window_resize_test.py).
      self.assertLess(np.mean(difference > 0), 1e-3)

  def test_padding_is_zero_and_the_window_top_left(self):
    record = _record(np.stack([_textured_frame()] * 10))
    parser = _parser(canvas_size=(_HEIGHT + 4, _WIDTH + 6))
    window = _parse(record, parser, is_training=False)[0]['clip_0']  # Seeded by the video: the same draws.
    features, _ = _canvas_batch(record, parser, is_training=False)
    height, width = features['window_size'][0].numpy()
    self.assertEqual(window.shape[1:3], (height, width))
    canvas = features['image'][0].numpy()
    self.assertAllEqual(canvas[:, :height, :width], window)
    self.assertEqual(canvas[:, height:].sum() + canvas[:, :, width:].sum(), 0)

  def test_without_spatial_augmentation_nothing_is_flipped(self):
    record = _record(np.stack([_textured_frame()] * 10))
    features, _ = _canvas_batch(record, _parser(spatial_augmentation=False, canvas_size=(_HEIGHT, _WIDTH)))
    self.assertAllEqual(features['flip'], [False, False])
    self.assertAllEqual(features['window_size'], [[_HEIGHT, _HEIGHT]] * 2)  # The central square.

  def test_rejects_a_small_canvas_and_per_frame_windows(self):
    with self.assertRaisesRegex(ValueError, 'canvas_size'):
      _parser(canvas_size=(_CROP - 1, _WIDTH))
    with self.assertRaisesRegex(ValueError, 'temporally consistent'):
      _parser(canvas_size=(_HEIGHT, _WIDTH), temporally_consistent=False)
    self.assertIsNone(_parser().canvas_batch_fn(2))

  def test_post_batch_processor_folds_the_canvas_features(self):
    features = {'clip_0': tf.zeros([2, 1, 4, 5, 3], tf.uint8), 'clip_1': tf.ones([2, 1, 4, 5, 3], tf.uint8),
                'window_size': tf.reshape(tf.range(8), [2, 2, 2]), 'flip': tf.constant([[1, 0], [0, 1]]) > 0}
    folded, _ = ssl_input.PostBatchProcessor()(features, {'label': tf.constant([0, 1])})
    self.assertEqual(sorted(folded), ['flip', 'image', 'window_size'])
    self.assertAllEqual(folded['image'][:, 0, 0, 0, 0], [0, 0, 1, 1])
    self.assertAllEqual(folded['window_size'][:, 0], [0, 4, 2, 6])
    self.assertAllEqual(folded['flip'], [True, False, False, True])


class PostBatchProcessorTest(tf.test.TestCase):

  def test_first_views_then_second_views(self):
    batch = 3
    image = tf.reshape(tf.range(batch * 2, dtype=tf.int32), [batch, 2, 1, 1, 1, 1])  # Value = 2 * row + view.
    image = tf.tile(image, [1, 1, 2, 2, 2, 3])
    labels = {'label': tf.constant([4, 5, 6])}
    features, out_labels = ssl_input.PostBatchProcessor()({'image': image}, labels)
    self.assertEqual(features['image'].shape, [2 * batch, 2, 2, 2, 3])
    self.assertAllEqual(features['image'][:, 0, 0, 0, 0], [0, 2, 4, 1, 3, 5])
    self.assertAllEqual(out_labels['label'], [4, 5, 6])


class InputReaderTest(tf.test.TestCase):

  def test_model_garden_input_reader(self):
    path = os.path.join(self.get_temp_dir(), 'videos.tfrecord')
    with tf.io.TFRecordWriter(path) as writer:
      for i in range(3):
        writer.write(_record(_index_coded_frames(10 + i), labels=[i]))
    params = cfg.DataConfig(input_path=path, global_batch_size=2, is_training=True, shuffle_buffer_size=3)
    parser = _parser()
    reader = input_reader.InputReader(
        params, dataset_fn=tf.data.TFRecordDataset, decoder_fn=video_decoder.Decoder().decode,
        parser_fn=parser.parse_fn(params.is_training), postprocess_fn=ssl_input.PostBatchProcessor())
    features, labels = next(iter(reader.read()))
    self.assertEqual(features['image'].shape, [4, _CLIP_FRAMES, _CROP, _CROP, 3])
    self.assertEqual(features['image'].dtype, tf.uint8)
    self.assertEqual(labels['label'].shape, [2])
    # Rows i and 2 + i are two clips of the same video: their frame colours come from the same index range.
    for i, label in enumerate(labels['label'].numpy()):
      for row in (i, 2 + i):
        self.assertLess(_frame_indices(features['image'][row].numpy()).max(), 10 + label)


if __name__ == '__main__':
  tf.test.main()
