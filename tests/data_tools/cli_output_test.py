"""What the data_tools commands print on a local run: no import noise, and summaries of this run's work only.

Run as subprocesses (the way users run them), because the noise came from Apache Beam's imports at start-up and a
test process has long imported Beam by then.
"""

import os
import subprocess
import sys

import tensorflow as tf

from data_tools import quiet_logs
from tests.data_tools import video_fixtures

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The two harmless Beam messages the project filters (data_tools/quiet_logs.py).
_NOISE = ("Failed to import GCSFileSystem", "apitools not found")


def _run(*args, cwd=None):
  env = dict(os.environ, PYTHONPATH=_REPO_ROOT, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.run([sys.executable, '-m', *args], cwd=cwd or _REPO_ROOT, env=env, capture_output=True,
                        text=True, timeout=300, check=False)


class CliOutputTest(tf.test.TestCase):

  def assertQuiet(self, process):
    output = process.stdout + process.stderr
    for noise in _NOISE:
      self.assertNotIn(noise, output)

  def test_help_has_no_beam_import_warnings(self):
    process = _run('data_tools.convert', '--help')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertIn('--source', process.stdout)
    self.assertQuiet(process)

  def test_ava_help_lists_its_flags(self):
    process = _run('data_tools.ava', '--help')  # absl's --help exits with status 1.
    for flag in ('annotations', 'label_map', 'movies_dir', 'output_dir', 'split', 'excluded', 'proposals',
                 'num_frames', 'temporal_stride', 'fps', 'short_side', 'segment_start', 'num_shards'):
      self.assertIn(f'--{flag}:', process.stdout)

  def test_calibrate_demo_reads_the_demo_videos_by_default(self):
    # Run where no demo has been rendered: the error names the default folder and how to make it.
    process = _run('data_tools.synthetic.calibrate_demo', cwd=self.get_temp_dir())
    self.assertEqual(process.returncode, 1)
    self.assertIn('--data_dir=demo_output/raw_videos is not a folder. Render the demo videos first (`make demo`',
                  process.stderr)
    self.assertNotIn('Traceback', process.stderr)

  def test_resumed_conversion_counts_this_runs_work_and_prints_no_beam_warnings(self):
    root = self.get_temp_dir()
    videos = os.path.join(root, 'videos')
    ids = [f'yt{i:09d}' for i in range(6)]
    # Kinetics layout: an annotation CSV and already cut clips named <youtube_id>_<start>_<end>.mp4.
    for youtube_id in ids[:-1]:
      video_fixtures.write_video(os.path.join(videos, f'{youtube_id}_000000_000001.mp4'), num_frames=8, fps=8)
    annotations = os.path.join(root, 'train.csv')
    with open(annotations, 'w') as f:
      f.write('label,youtube_id,time_start,time_end,split\n')
      f.writelines(f'"class {i % 2}",{youtube_id},0,1,train\n' for i, youtube_id in enumerate(ids))
    out = os.path.join(root, 'records')
    args = ('data_tools.convert', '--source=kinetics', f'--annotations={annotations}', f'--video_dir={videos}',
            '--split=train', f'--output_dir={out}', '--num_shards=3', '--fps=0', '--max_failure_fraction=0.5',
            '--progress_interval=0')

    first = _run(*args)
    self.assertEqual(first.returncode, 0, first.stderr)
    self.assertIn('[train] 5 of 6 inputs converted; 1 failed (1 missing file).', first.stderr)
    self.assertIn('[train] this run: 3 shards written in', first.stderr)
    self.assertIn(', 40 frames stored.', first.stderr)  # 5 videos of 8 frames (--fps=0 keeps them).
    self.assertQuiet(first)

    # The missing download arrives: only its shard is converted again, and only its frames are counted.
    video_fixtures.write_video(os.path.join(videos, f'{ids[-1]}_000000_000001.mp4'), num_frames=8, fps=8)
    second = _run(*args)
    self.assertEqual(second.returncode, 0, second.stderr)
    self.assertIn('[train] 6 of 6 inputs converted; 0 failed.', second.stderr)
    self.assertIn('[train] this run: 1 shards written in', second.stderr)
    self.assertIn('; 2 shards were already complete from an earlier run.', second.stderr)
    self.assertIn(', 16 frames stored;', second.stderr)  # The redone shard holds 2 of the 6 videos.
    self.assertQuiet(second)

  def test_filter_drops_only_the_known_messages(self):
    quiet_logs.drop_known_harmless_beam_warnings()
    quiet_logs.drop_known_harmless_beam_warnings()  # Idempotent: one filter per logger.
    logger = tf.get_logger().manager.getLogger('apache_beam.io.filesystems')
    self.assertLen(logger.filters, 1)
    with self.assertLogs('apache_beam.io.filesystems', level='WARNING') as logs:
      logger.warning('Failed to import GCSFileSystem; loading of this filesystem will be skipped. Error details: '
                     "cannot import name 'storage' from 'google.cloud' (unknown location)")
      logger.warning('Failed to import GCSFileSystem; loading of this filesystem will be skipped. Error details: '
                     'libfoo.so: cannot open shared object file')
      logger.warning('Failed to import S3FileSystem; something else')
    self.assertLen(logs.records, 2)
    self.assertIn('libfoo.so', logs.records[0].getMessage())


if __name__ == '__main__':
  tf.test.main()
