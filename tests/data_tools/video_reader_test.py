"""Tests for data_tools.video_reader on tiny real files of every supported container."""

import os

from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from data_tools import report
from data_tools import video_reader
from tests.data_tools import real_videos
from tests.data_tools import video_fixtures


def _source_indices(frames: np.ndarray) -> list:
  """Which source frame each output frame shows, from its grey level."""
  means = frames.reshape(len(frames), -1).mean(axis=1)
  return [int(round((m - video_fixtures.gray_level(0)) / 12.0)) for m in means]


class VideoReaderTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.named_parameters(
      ('mp4_h264', 'mp4', 'libx264'),
      ('avi_mpeg4', 'avi', 'mpeg4'),
      ('avi_mjpeg', 'avi', 'mjpeg'),
      ('webm_vp8', 'webm', 'libvpx'),
      ('webm_vp9', 'webm', 'libvpx-vp9'),
      ('mkv_h264', 'mkv', 'libx264'),
      ('mov_h264', 'mov', 'libx264'),
      ('gif', 'gif', 'gif'),
  )
  def test_decodes_every_container_at_source_rate(self, extension, codec):
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), f'v.{extension}'), num_frames=12, fps=25,
                                      codec=codec)
    frames, info = video_reader.read_video(path, fps=0, short_side=0)
    self.assertEqual(frames.shape, (12, 24, 32, 3))
    self.assertEqual(frames.dtype, np.uint8)
    self.assertEqual(_source_indices(frames), list(range(12)))
    self.assertAlmostEqual(info.source_fps, 25.0)
    self.assertAlmostEqual(info.fps, 25.0)
    self.assertEqual((info.width, info.height, info.rotation), (32, 24, 0))

  @parameterized.parameters((25.0,), (10.0,), (60.0,))
  def test_resamples_by_timestamp(self, fps):
    # 16 frames at 30 fps last 16/30 s; output time k/fps shows source frame floor(k * 30 / fps).
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'v.mp4'), num_frames=16, fps=30)
    frames, info = video_reader.read_video(path, fps=fps, short_side=0)
    num_outputs = int(np.ceil(16 / 30 * fps - 1e-9))
    expected = np.floor(np.arange(num_outputs, dtype=np.float64) * 30.0 / fps + 1e-9).astype(int).tolist()
    self.assertEqual(_source_indices(frames), expected)
    self.assertEqual(info.fps, fps)
    self.assertAlmostEqual(info.source_fps, 30.0)

  def test_time_span_with_seek(self):
    # Resampling inside a span: [2.05, 2.6) at 10 fps gives times 2.05, 2.15, ..., 2.55.
    path = os.path.join(self.get_temp_dir(), 'long.mp4')
    video_fixtures.write_video(path, num_frames=16, fps=4)  # 4 s: frame i covers [i/4, (i+1)/4).
    frames, _ = video_reader.read_video(path, fps=10, short_side=0, start=2.05, end=2.6)
    times = 2.05 + np.arange(6) / 10.0
    self.assertEqual(_source_indices(frames), np.floor(times * 4 + 1e-9).astype(int).tolist())
    with video_reader.VideoReader(path, fps=0, short_side=0, start=1.0, end=2.0) as reader:
      kept = np.stack(list(reader))
      self.assertAllClose(reader.timestamps, [1.0, 1.25, 1.5, 1.75])
    self.assertEqual(_source_indices(kept), [4, 5, 6, 7])

  @parameterized.parameters(((24, 32), 16, (16, 21)), ((32, 24), 16, (21, 16)), ((24, 32), 0, (24, 32)),
                            ((24, 32), 48, (48, 64)))
  def test_resizes_short_side(self, size, short_side, expected):
    height, width = size
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'v.mp4'), num_frames=2, width=width,
                                      height=height)
    frames, _ = video_reader.read_video(path, short_side=short_side)
    self.assertEqual(frames.shape[1:3], expected)

  def test_output_size_rounds_long_side(self):
    self.assertEqual(video_reader.output_size(320, 240, 256), (341, 256))
    self.assertEqual(video_reader.output_size(240, 320, 256), (256, 341))
    self.assertEqual(video_reader.output_size(320, 240, 0), (320, 240))

  @parameterized.named_parameters(('clockwise', -90, 3), ('counterclockwise', 90, 1), ('upside_down', 180, 2))
  def test_honours_display_rotation(self, degrees, quarter_turns):
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'phone.mp4'), num_frames=2,
                                      rotation=degrees, top_band=True)
    frames, info = video_reader.read_video(path, short_side=0)
    unrotated, _ = video_reader.read_video(
        video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'plain.mp4'), num_frames=2, top_band=True),
        short_side=0)
    # Reference: NumPy's counterclockwise quarter turns of the stored frames.
    self.assertAllEqual(frames, np.rot90(unrotated, quarter_turns, axes=(1, 2)))
    self.assertEqual(info.rotation, 90 * quarter_turns)
    expected_size = (24, 32) if quarter_turns % 2 else (32, 24)
    self.assertEqual((info.width, info.height), expected_size)
    if degrees == -90:  # Displayed rotated clockwise: the white top band ends up on the right.
      self.assertGreater(frames[0, :, -4:].mean(), 200)
      self.assertLess(frames[0, :, :4].mean(), 100)

  def test_errors_name_file_and_reason(self):
    directory = self.get_temp_dir()
    long_video = video_fixtures.write_video(os.path.join(directory, 'short.mp4'), num_frames=8, fps=25)
    cases = [
        (os.path.join(directory, 'absent.mp4'), {}, video_reader.MissingFileError, report.MISSING_FILE),
        (video_fixtures.write_text(os.path.join(directory, 'text.mp4')), {}, video_reader.UnreadableVideoError,
         report.UNREADABLE),
        (video_fixtures.write_text(os.path.join(directory, 'empty.mp4'), ''), {},
         video_reader.UnreadableVideoError, report.UNREADABLE),
        (video_fixtures.write_audio_only(os.path.join(directory, 'audio.mkv')), {},
         video_reader.NoVideoStreamError, report.NO_VIDEO_STREAM),
        (video_fixtures.write_zero_frame_video(os.path.join(directory, 'zero.mkv')), {},
         video_reader.ZeroFramesError, report.ZERO_FRAMES),
        (long_video, {'start': 5.0, 'end': 6.0}, video_reader.OutsideTimeSpanError, report.OUTSIDE_TIME_SPAN),
        (long_video, {'start': 0.2, 'end': 0.1}, video_reader.OutsideTimeSpanError, report.OUTSIDE_TIME_SPAN),
    ]
    for path, span, error_type, reason in cases:
      with self.subTest(path=os.path.basename(path), span=span):
        with self.assertRaises(error_type) as caught:
          video_reader.read_video(path, **span)
        self.assertEqual(caught.exception.reason, reason)
        self.assertIn(path, str(caught.exception))

  def test_truncated_file_is_unreadable(self):
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'v.mp4'), num_frames=8)
    with open(path, 'rb') as f:
      data = f.read()
    truncated = os.path.join(self.get_temp_dir(), 'truncated.mp4')
    with open(truncated, 'wb') as f:
      f.write(data[:len(data) // 2])
    with self.assertRaises(video_reader.VideoReadError) as caught:
      video_reader.read_video(truncated)
    self.assertEqual(caught.exception.reason, report.UNREADABLE)

  def test_reads_real_clip_whole(self):
    # A camera clip encoded elsewhere: every declared frame decodes, and the reader reports the container's facts.
    frames, info = video_reader.read_video(real_videos.path('carphone_distorted.mp4'), fps=0, short_side=0)
    self.assertEqual(frames.shape, (120, 144, 176, 3))
    self.assertEqual((info.codec, info.num_frames, info.width, info.height), ('h264', 120, 176, 144))
    self.assertAlmostEqual(info.duration, 120 * 1001 / 30000)

  @parameterized.product(layout=['faststart.mp4', 'remuxed.mkv'], fraction=[0.5, 0.7, 0.9])
  def test_cut_real_clip_is_truncated(self, layout, fraction):
    # With the index at the front (mp4 faststart) or per-track durations (mkv), a cut file opens and decodes
    # without an error up to where it was cut; only comparing with the declared length shows it is incomplete.
    directory = self.get_temp_dir()
    source = real_videos.path('carphone_distorted.mp4')
    whole = real_videos.remux(source, os.path.join(directory, layout),
                              {'movflags': 'faststart'} if layout.endswith('.mp4') else None)
    reference, _ = video_reader.read_video(source, fps=0, short_side=0)
    path = real_videos.cut(whole, os.path.join(directory, f'cut_{fraction}_{layout}'), fraction)
    with self.assertRaises(video_reader.TruncatedVideoError) as caught:
      video_reader.read_video(path, fps=0, short_side=0)
    self.assertEqual(caught.exception.reason, report.TRUNCATED)
    message = str(caught.exception)
    self.assertIn(path, message)
    self.assertRegex(message, r'decoded \d+\.\d\d s \(\d+ frames\) of the 4\.00 s')
    self.assertIn('--allow_truncated', message)
    # Accepted explicitly: the frames kept are exactly the first frames of the whole clip.
    with video_reader.VideoReader(path, fps=0, short_side=0, allow_truncated=True) as reader:
      kept = np.stack(list(reader))
      self.assertStartsWith(reader.truncation, 'truncated: decoded')
    self.assertLess(len(kept), 0.95 * len(reference))
    self.assertAllEqual(kept, reference[:len(kept)])

  @parameterized.parameters(0.5, 0.9)
  def test_cut_real_clip_with_index_at_the_end_fails(self, fraction):
    # The camera clip keeps its index after the data: a cut loses the index, and the file cannot be opened.
    path = real_videos.cut(real_videos.path('carphone_distorted.mp4'),
                           os.path.join(self.get_temp_dir(), f'cut_{fraction}.mp4'), fraction)
    with self.assertRaises(video_reader.VideoReadError) as caught:
      video_reader.read_video(path, fps=0, short_side=0)
    self.assertIn(path, str(caught.exception))

  @parameterized.product(video=[('avi', 'mpeg4'), ('avi', 'mjpeg'), ('webm', 'libvpx'), ('webm', 'libvpx-vp9')],
                         fraction=[0.7, 0.8])
  def test_cut_encoded_video_is_truncated(self, video, fraction):
    # AVI decodes a cut file without any error at all; its header still declares every frame.
    extension, codec = video
    directory = self.get_temp_dir()
    whole = video_fixtures.write_video(os.path.join(directory, f'{codec}.{extension}'), num_frames=20, fps=25,
                                       codec=codec, width=96, height=64)
    path = real_videos.cut(whole, os.path.join(directory, f'cut_{fraction}_{codec}.{extension}'), fraction)
    with self.assertRaises(video_reader.TruncatedVideoError) as caught:
      video_reader.read_video(path, fps=10, short_side=0)
    self.assertIn(path, str(caught.exception))
    frames, _ = video_reader.read_video(path, fps=0, short_side=0, allow_truncated=True)
    self.assertEqual(_source_indices(frames), list(range(len(frames))))
    self.assertLess(len(frames), 20 - 3)

  def test_span_before_the_cut_reads_and_span_after_it_is_truncated(self):
    directory = self.get_temp_dir()
    whole = real_videos.remux(real_videos.path('carphone_distorted.mp4'), os.path.join(directory, 'fs.mp4'),
                              {'movflags': 'faststart'})
    path = real_videos.cut(whole, os.path.join(directory, 'cut.mp4'), 0.7)  # Decodes to 1.80 s of 4.00 s.
    frames, _ = video_reader.read_video(path, fps=10, short_side=0, start=0.5, end=1.5)
    self.assertLen(frames, 10)
    with self.assertRaises(video_reader.TruncatedVideoError):
      video_reader.read_video(path, fps=10, short_side=0, start=3.0, end=3.5)

  def test_corrupt_data_inside_the_stream_is_reported(self):
    # Overwritten bytes in the middle of the h264 data: decoding fails with more packets after the broken one.
    path = real_videos.corrupt(real_videos.path('carphone_distorted.mp4'),
                               os.path.join(self.get_temp_dir(), 'damaged.mp4'), 0.4)
    for allow_truncated in (False, True):
      with self.assertRaises(video_reader.UnreadableVideoError) as caught:
        video_reader.read_video(path, fps=0, short_side=0, allow_truncated=allow_truncated)
      self.assertEqual(caught.exception.reason, report.UNREADABLE)
      self.assertRegex(str(caught.exception), r'corrupt data while decoding after \d+\.\d\d s .*more data after it')

  def test_reads_remote_paths_through_tensorflow_file_systems(self):
    # 'file://' takes the same route as 'gs://': a TensorFlow GFile handed to PyAV.
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'v.mp4'), num_frames=6, fps=25)
    frames, _ = video_reader.read_video('file://' + path, short_side=0, start=0.08)
    self.assertEqual(_source_indices(frames), [2, 3, 4, 5])
    with self.assertRaises(video_reader.MissingFileError):
      video_reader.read_video('file://' + path + '.absent')

  def test_rejects_negative_settings(self):
    with self.assertRaisesRegex(ValueError, 'fps'):
      video_reader.VideoReader('x.mp4', fps=-1)
    with self.assertRaisesRegex(ValueError, 'short_side'):
      video_reader.VideoReader('x.mp4', short_side=-1)


if __name__ == '__main__':
  tf.test.main()
