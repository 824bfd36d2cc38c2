"""End-to-end tests of the conversion CLI: real video files in, TFRecord SequenceExamples and a report out.

Most runs use Beam's in-process mode (the default for small inputs); one test compares it with two worker
processes, and one kills a conversion with SIGKILL and resumes it.
"""

import glob
import json
import os
import signal
import subprocess
import sys
import textwrap
from unittest import mock

import numpy as np
import tensorflow as tf

from data_tools import convert
from data_tools import report
from data_tools import sources
from data_tools import verify
from official.vision.dataloaders import video_input
from official_cvrl.dataloaders import feature_keys
from tests.data_tools import real_videos
from tests.data_tools import video_fixtures

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _make_folder_dataset(root, classes=('left', 'right'), per_class=2, num_frames=16):
  for name in classes:
    for i in range(per_class):
      video_fixtures.write_video(os.path.join(root, name, f'{name}{i}.mp4'), num_frames=num_frames, fps=30)
  return root


def _run(*args):
  return convert.main([*args, '--progress_interval=0'])


def _read_examples(pattern):
  examples = {}
  for path in sorted(glob.glob(pattern)):
    for raw in tf.data.TFRecordDataset(path).as_numpy_iterator():
      example = tf.train.SequenceExample.FromString(raw)
      video_id = example.context.feature[feature_keys.VIDEO_ID_KEY].bytes_list.value[0].decode()
      examples[video_id] = example
  return examples


def _context(example, key):
  feature = example.context.feature[key]
  return list(getattr(feature, feature.WhichOneof('kind')).value)


def _shard_bytes(directory):
  result = {}
  for path in sorted(glob.glob(os.path.join(directory, '*.tfrecord'))):
    with open(path, 'rb') as f:
      result[os.path.basename(path)] = f.read()
  return result


def _read_report(directory, split='train'):
  with open(os.path.join(directory, f'report_{split}.jsonl')) as f:
    return report.loads(f.read())


class ConvertTest(tf.test.TestCase):

  def test_round_trip_folder(self):
    data = _make_folder_dataset(os.path.join(self.get_temp_dir(), 'videos'))
    out = os.path.join(self.get_temp_dir(), 'out')
    self.assertEqual(_run('--source=folder', f'--input_dir={data}', '--split=train', f'--output_dir={out}',
                          '--num_shards=2', '--fps=25', '--short_side=0'), 0)
    self.assertLen(glob.glob(os.path.join(out, 'train-*-of-00002.tfrecord')), 2)
    with open(os.path.join(out, 'label_map.txt')) as f:
      self.assertEqual(f.read(), 'left\nright\n')
    examples = _read_examples(os.path.join(out, 'train-*.tfrecord'))
    self.assertEqual(sorted(examples), ['left/left0.mp4', 'left/left1.mp4', 'right/right0.mp4', 'right/right1.mp4'])
    # 16 frames at 30 fps span 0.533 s: 14 frames at 25 fps, output k showing source frame floor(k * 30 / 25).
    expected_sources = np.floor(np.arange(14) * 30.0 / 25.0 + 1e-9).astype(int)
    for video_id, example in examples.items():
      label = video_id.split('/')[0]
      self.assertEqual(_context(example, feature_keys.LABEL_INDEX_KEY), [['left', 'right'].index(label)])
      self.assertEqual(_context(example, feature_keys.LABEL_STRING_KEY), [label.encode()])
      self.assertEqual(_context(example, feature_keys.FPS_KEY), [25.0])
      self.assertEqual(_context(example, feature_keys.SOURCE_FPS_KEY), [30.0])
      self.assertEqual(_context(example, feature_keys.NUM_FRAMES_KEY), [14])
      self.assertEqual(_context(example, feature_keys.HEIGHT_KEY) + _context(example, feature_keys.WIDTH_KEY),
                       [24, 32])
      frames = [tf.io.decode_jpeg(f.bytes_list.value[0]).numpy()
                for f in example.feature_lists.feature_list[feature_keys.IMAGE_KEY].feature]
      means = np.array([f.mean() for f in frames])
      self.assertAllClose(means, [video_fixtures.gray_level(i) for i in expected_sources], atol=4)
    entries = _read_report(out)
    self.assertEqual([e.status for e in entries], [report.CONVERTED] * 4)
    self.assertEqual(entries[0].details['num_frames'], 14)
    stats = verify.verify(os.path.join(out, 'train-*.tfrecord'), os.path.join(out, 'label_map.txt'))
    self.assertEqual(stats.videos_per_class, {'left': 2, 'right': 2})

  def test_model_garden_decoder_parses_output(self):
    data = _make_folder_dataset(os.path.join(self.get_temp_dir(), 'videos'), per_class=1)
    out = os.path.join(self.get_temp_dir(), 'out')
    self.assertEqual(_run('--source=folder', f'--input_dir={data}', '--split=train', f'--output_dir={out}',
                          '--num_shards=1', '--short_side=24'), 0)
    raw = next(tf.data.TFRecordDataset(glob.glob(os.path.join(out, '*.tfrecord'))).as_numpy_iterator())
    decoded = video_input.Decoder().decode(tf.constant(raw))
    self.assertEqual(decoded[video_input.IMAGE_KEY].shape, (14,))
    self.assertIn(decoded[video_input.LABEL_KEY].numpy().tolist(), [[0], [1]])
    clip = video_input.process_image(decoded[video_input.IMAGE_KEY], is_training=False, num_frames=4,
                                     min_resize=24, crop_size=24)
    self.assertEqual(clip.shape, (4, 24, 24, 3))

  def test_every_bad_input_is_reported_and_the_run_continues(self):
    root = self.get_temp_dir()
    videos = os.path.join(root, 'downloads')
    video_fixtures.write_video(os.path.join(videos, 'good_000000_000001.mp4'), num_frames=8, fps=25)
    video_fixtures.write_video(os.path.join(videos, 'full.mp4'), num_frames=20, fps=25)  # 0.8 s long.
    video_fixtures.write_video(os.path.join(videos, 'novel_000000_000001.mp4'), num_frames=8, fps=25)
    video_fixtures.write_text(os.path.join(videos, 'text.mp4'))
    video_fixtures.write_audio_only(os.path.join(videos, 'audio.mkv'))
    video_fixtures.write_zero_frame_video(os.path.join(videos, 'zero.mkv'))
    csv_path = video_fixtures.write_text(os.path.join(root, 'train.csv'), textwrap.dedent("""\
        label,youtube_id,time_start,time_end,split
        a,good,0,1,train
        a,full,0.2,0.6,train
        a,absent,0,10,train
        b,text,0,10,train
        b,audio,0,10,train
        b,zero,0,10,train
        b,full,5,7,train
        zzz,novel,0,1,train
        a,good,0,1,train
        """))
    out = os.path.join(root, 'out')
    label_map_path = video_fixtures.write_text(os.path.join(root, 'label_map.txt'), 'a\nb\n')
    args = ['--source=kinetics', f'--annotations={csv_path}', f'--video_dir={videos}', '--split=train',
            f'--output_dir={out}', f'--label_map={label_map_path}', '--num_shards=3', '--short_side=0']
    self.assertEqual(_run(*args), 1)  # 7 of 9 failed > 1%.
    entries = {(e.item_id, e.reason) for e in _read_report(out)}
    self.assertEqual(entries, {
        ('good_000000_000001', ''), ('good_000000_000001', report.DUPLICATE_ID),
        ('full_000000_000000', ''), ('absent_000000_000010', report.MISSING_FILE),
        ('text_000000_000010', report.UNREADABLE), ('audio_000000_000010', report.NO_VIDEO_STREAM),
        ('zero_000000_000010', report.ZERO_FRAMES), ('full_000005_000007', report.OUTSIDE_TIME_SPAN),
        ('novel_000000_000001', report.UNKNOWN_LABEL)})
    self.assertLen(_read_report(out), 9)  # One line per CSV row.
    examples = _read_examples(os.path.join(out, 'train-*.tfrecord'))
    self.assertEqual(sorted(examples), ['full_000000_000000', 'good_000000_000001'])
    # The cut clip: [0.2, 0.6) at 25 fps is 10 frames starting at source frame 5; times stored in microseconds.
    cut = examples['full_000000_000000']
    self.assertEqual(_context(cut, feature_keys.NUM_FRAMES_KEY), [10])
    self.assertEqual(_context(cut, feature_keys.START_TIMESTAMP_KEY) + _context(cut, feature_keys.END_TIMESTAMP_KEY),
                     [200000, 600000])
    first = tf.io.decode_jpeg(cut.feature_lists.feature_list[feature_keys.IMAGE_KEY].feature[0].bytes_list.value[0])
    self.assertAllClose(float(tf.reduce_mean(tf.cast(first, tf.float32))), video_fixtures.gray_level(5), atol=4)
    self.assertEqual(_run(*args, '--max_failure_fraction=0.8'), 0)

  def test_truncated_videos_fail_unless_allowed(self):
    # Halves of real clips (with their index at the front, so they open) and of freshly encoded AVI/WebM files
    # decode without an error; they must not be stored as if whole.
    root = self.get_temp_dir()
    videos = os.path.join(root, 'videos')
    scratch = os.path.join(root, 'scratch')
    faststart = {'movflags': 'faststart'}
    bunny = real_videos.remux(real_videos.path('bigbuckbunny.mp4'), os.path.join(scratch, 'bunny.mp4'), faststart)
    phone = real_videos.remux(real_videos.path('carphone_distorted.mp4'), os.path.join(scratch, 'phone.mp4'),
                              faststart)
    os.makedirs(os.path.join(videos, 'whole'))
    os.symlink(real_videos.path('carphone_distorted.mp4'), os.path.join(videos, 'whole', 'carphone.mp4'))
    video_fixtures.write_video(os.path.join(videos, 'whole', 'grey.webm'), num_frames=20, fps=25, codec='libvpx')
    cut = {'bunny_half.mp4': bunny, 'phone_half.mp4': phone,
           'grey_cut.avi': video_fixtures.write_video(os.path.join(scratch, 'grey.avi'), num_frames=20, fps=25,
                                                      codec='mjpeg', width=96, height=64),
           'grey_cut.webm': video_fixtures.write_video(os.path.join(scratch, 'grey.webm'), num_frames=20, fps=25,
                                                       codec='libvpx-vp9', width=96, height=64)}
    for name, source in cut.items():
      real_videos.cut(source, os.path.join(videos, 'cut', name), 0.5 if name.endswith('.mp4') else 0.7)
    out = os.path.join(root, 'out')
    args = ['--source=folder', f'--input_dir={videos}', '--split=train', f'--output_dir={out}', '--num_shards=2',
            '--fps=10', '--short_side=32']
    with mock.patch.object(convert, '_log') as log:
      self.assertEqual(_run(*args), 1)
    self.assertIn('2 of 6 inputs converted; 4 failed (4 truncated)', ' '.join(str(c) for c in log.call_args_list))
    entries = {e.item_id: e for e in _read_report(out)}
    self.assertEqual({i: e.reason for i, e in entries.items()},
                     {'whole/carphone.mp4': '', 'whole/grey.webm': '', 'cut/bunny_half.mp4': report.TRUNCATED,
                      'cut/phone_half.mp4': report.TRUNCATED, 'cut/grey_cut.avi': report.TRUNCATED,
                      'cut/grey_cut.webm': report.TRUNCATED})
    self.assertIn('of the 5.28 s (132 frames) the container declares', entries['cut/bunny_half.mp4'].message)
    self.assertEqual(sorted(_read_examples(os.path.join(out, '*.tfrecord'))), ['whole/carphone.mp4',
                                                                               'whole/grey.webm'])
    # Accepted explicitly: every input is stored, the truncated ones as far as they decode, and marked.
    self.assertEqual(_run(*args, '--allow_truncated', '--max_failure_fraction=0'), 0)
    entries = {e.item_id: e for e in _read_report(out)}
    self.assertEqual({e.status for e in entries.values()}, {report.CONVERTED})
    self.assertEqual(sorted(i for i, e in entries.items() if report.TRUNCATED in e.details), sorted(
        f'cut/{name}' for name in cut))
    examples = _read_examples(os.path.join(out, '*.tfrecord'))
    self.assertEqual(_context(examples['whole/carphone.mp4'], feature_keys.NUM_FRAMES_KEY), [41])  # 4.004 s at 10.
    self.assertLess(_context(examples['cut/phone_half.mp4'], feature_keys.NUM_FRAMES_KEY)[0], 20)
    self.assertEqual(_context(examples['cut/bunny_half.mp4'], feature_keys.HEIGHT_KEY), [32])
    verify.verify(os.path.join(out, '*.tfrecord'), num_decode=6)

  def test_label_map_stable_across_separate_runs(self):
    root = self.get_temp_dir()
    train = _make_folder_dataset(os.path.join(root, 'train'), classes=('walk', 'run', 'jump'), per_class=1,
                                 num_frames=4)
    val = _make_folder_dataset(os.path.join(root, 'val'), classes=('walk', 'jump'), per_class=1, num_frames=4)
    label_map_path = os.path.join(root, 'label_map.txt')
    for split, data in [('train', train), ('val', val)]:
      self.assertEqual(_run('--source=folder', f'--input_dir={data}', f'--split={split}',
                            f'--output_dir={os.path.join(root, split + "_out")}', f'--label_map={label_map_path}'), 0)
    with open(label_map_path) as f:
      self.assertEqual(f.read().split(), ['jump', 'run', 'walk'])
    for split in ('train', 'val'):
      for video_id, example in _read_examples(os.path.join(root, f'{split}_out', '*.tfrecord')).items():
        self.assertEqual(_context(example, feature_keys.LABEL_INDEX_KEY),
                         [['jump', 'run', 'walk'].index(video_id.split('/')[0])])

  def test_rerun_skips_finished_shards_and_redoes_changed_settings(self):
    data = _make_folder_dataset(os.path.join(self.get_temp_dir(), 'videos'), num_frames=4)
    out = os.path.join(self.get_temp_dir(), 'out')
    args = ['--source=folder', f'--input_dir={data}', '--split=train', f'--output_dir={out}', '--num_shards=2']
    self.assertEqual(_run(*args), 0)
    first = _shard_bytes(out)
    times = {p: os.stat(p).st_mtime_ns for p in glob.glob(os.path.join(out, '*.tfrecord'))}
    with mock.patch.object(convert, '_log') as log:
      self.assertEqual(_run(*args), 0)
    self.assertIn('2 of 2 shards are already complete', ' '.join(str(c) for c in log.call_args_list))
    self.assertEqual({p: os.stat(p).st_mtime_ns for p in times}, times)
    self.assertEqual(_run(*args, '--jpeg_quality=40'), 0)
    self.assertNotEqual(_shard_bytes(out), first)
    with mock.patch.object(convert, '_log') as log:
      self.assertEqual(_run(*args[:-1], '--num_shards=3'), 2)
    self.assertIn('already holds train shards', ' '.join(str(c) for c in log.call_args_list))

  def test_killed_run_resumes_to_the_same_shards(self):
    data = _make_folder_dataset(os.path.join(self.get_temp_dir(), 'videos'), classes=('a', 'b', 'c'), per_class=4,
                                num_frames=4)
    clean = os.path.join(self.get_temp_dir(), 'clean')
    killed = os.path.join(self.get_temp_dir(), 'killed')
    common = ['--source=folder', f'--input_dir={data}', '--split=train', '--num_shards=6']
    self.assertEqual(_run(*common, f'--output_dir={clean}'), 0)
    # A child process converts with a converter that SIGKILLs it at the start of the 4th video: shard 1 done
    # (2 videos), shard 2 half written.
    script = video_fixtures.write_text(os.path.join(self.get_temp_dir(), 'killed_run.py'), textwrap.dedent("""\
        import os, signal, sys
        from data_tools import convert
        calls = [0]
        original = convert.VideoConverter.convert
        def convert_then_die(self, payload):
          calls[0] += 1
          if calls[0] == 4:
            os.kill(os.getpid(), signal.SIGKILL)
          return original(self, payload)
        convert.VideoConverter.convert = convert_then_die
        sys.exit(convert.main(sys.argv[1:]))
        """))
    env = dict(os.environ, PYTHONPATH=_REPO_ROOT)
    child = subprocess.run([sys.executable, script, *common, f'--output_dir={killed}', '--progress_interval=0'],
                           env=env, capture_output=True, check=False, timeout=300)
    self.assertEqual(child.returncode, -signal.SIGKILL, child.stderr.decode()[-2000:])
    clean_shards = _shard_bytes(clean)
    survived = _shard_bytes(killed)
    self.assertLen(survived, 1)
    for name, data_bytes in survived.items():  # Whatever is visible is complete.
      self.assertEqual(data_bytes, clean_shards[name])
    state = os.path.join(killed, '.convert_state')
    self.assertNotEmpty([n for n in os.listdir(state) if '.tmp-' in n])  # The half-written shard.
    survivor_time = {n: os.stat(os.path.join(killed, n)).st_mtime_ns for n in survived}
    self.assertEqual(_run(*common, f'--output_dir={killed}'), 0)
    self.assertEqual(_shard_bytes(killed), clean_shards)
    self.assertEqual({n: os.stat(os.path.join(killed, n)).st_mtime_ns for n in survived}, survivor_time)
    self.assertEmpty([p for p in glob.glob(os.path.join(killed, '**', '*'), recursive=True) if '.tmp-' in p])
    self.assertEqual(os.listdir(state).count('train.plan.pkl'), 1)
    self.assertEqual([e.to_json() for e in _read_report(killed)], [e.to_json() for e in _read_report(clean)])

  def test_same_shards_with_one_or_two_worker_processes(self):
    data = _make_folder_dataset(os.path.join(self.get_temp_dir(), 'videos'), per_class=3, num_frames=4)
    outputs = []
    for mode, workers in [('in_memory', 1), ('multi_processing', 2)]:
      out = os.path.join(self.get_temp_dir(), mode)
      outputs.append(out)
      self.assertEqual(_run('--source=folder', f'--input_dir={data}', '--split=train', f'--output_dir={out}',
                            '--num_shards=3', f'--direct_running_mode={mode}', f'--direct_num_workers={workers}'), 0)
    one, two = (_shard_bytes(out) for out in outputs)
    self.assertLen(one, 3)
    self.assertEqual(one, two)
    reports = [[json.loads(e.to_json()) for e in _read_report(out)] for out in outputs]
    self.assertEqual(reports[0], reports[1])

  def test_small_local_jobs_are_detected(self):
    path = video_fixtures.write_video(os.path.join(self.get_temp_dir(), 'a.mp4'), num_frames=2)
    self.assertTrue(convert.is_small_job([sources.VideoRecord('a', path, 'x')]))
    with mock.patch.object(convert, '_IN_PROCESS_BYTES', os.path.getsize(path)):
      self.assertFalse(convert.is_small_job([sources.VideoRecord('a', path, 'x')]))
    self.assertIsNone(convert.is_small_job([sources.VideoRecord('b', 'gs://bucket/b.mp4', None)]))

  def test_mistyped_option_fails_with_a_suggestion(self):
    with mock.patch.object(convert, '_log') as log:
      self.assertEqual(_run('--source=folder', f'--input_dir={self.get_temp_dir()}', '--split=train',
                            f'--output_dir={self.get_temp_dir()}', '--shortside=0'), 2)
    self.assertIn('--shortside (did you mean --short_side?)', log.call_args[0][0])

  def test_unlabeled_list(self):
    root = self.get_temp_dir()
    video_fixtures.write_video(os.path.join(root, 'clips', 'a.mp4'), num_frames=4)
    list_file = video_fixtures.write_text(os.path.join(root, 'list.txt'), 'clips/a.mp4\nclips/gone.mp4\n')
    out = os.path.join(root, 'out')
    self.assertEqual(_run('--source=list', f'--input_list={list_file}', '--split=pretrain', f'--output_dir={out}',
                          '--max_failure_fraction=0.5'), 0)
    examples = _read_examples(os.path.join(out, 'pretrain-*.tfrecord'))
    self.assertEqual(_context(examples['clips/a.mp4'], feature_keys.LABEL_INDEX_KEY),
                     [feature_keys.UNLABELED_INDEX])
    self.assertNotIn(feature_keys.LABEL_STRING_KEY, examples['clips/a.mp4'].context.feature)
    self.assertFalse(os.path.exists(os.path.join(out, 'label_map.txt')))
    reasons = {e.item_id: e.reason for e in _read_report(out, 'pretrain')}
    self.assertEqual(reasons, {'clips/a.mp4': '', 'clips/gone.mp4': report.MISSING_FILE})


if __name__ == '__main__':
  tf.test.main()
