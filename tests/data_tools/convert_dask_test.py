"""The converter on a real distributed engine: Beam's DaskRunner against a `dask scheduler` and two `dask worker`
processes on 127.0.0.1, started from the command line as docs/distributed.md tells a user to.

The cluster test checks what a user relies on: the CLI accepts the runner's own options, both workers convert
shards, and shards, report and label map are byte for byte those of a local run. It takes about 40-60 s on two
busy cores, most of it the scheduler and both workers importing TensorFlow when they unpickle the converter.
The other tests check the option handling in-process and take a second.
"""

import contextlib
import glob
import json
import os
import re
from unittest import mock

from apache_beam.options import pipeline_options
from apache_beam.runners.dask import dask_runner
import distributed
import tensorflow as tf

from data_tools import convert
from data_tools import pipeline
from tests import local_cluster
from tests.data_tools import video_fixtures

_DASK = 'apache_beam.runners.dask.dask_runner.DaskRunner'


def _output_files(directory):
  """Every file a conversion leaves for the user (shards, report, label map): name -> bytes."""
  result = {}
  for path in sorted(glob.glob(os.path.join(directory, '*'))):
    if os.path.isfile(path):
      with open(path, 'rb') as f:
        result[os.path.basename(path)] = f.read()
  return result


def _bundles_per_worker(client):
  """Worker address -> indices of the Dask partitions on which it ran a Beam DoFn bundle.

  Read from each worker's own transition log (`executing -> memory` of an `apply_dofn_to_bundle` task), so it
  counts work done, not work merely assigned.
  """
  def executed(dask_worker):
    done = set()
    for entry in dask_worker.state.log:
      key, start, finish = entry[:3]
      if (start, finish) == ('executing', 'memory') and 'apply_dofn_to_bundle' in str(key):
        done.add(key[1] if isinstance(key, tuple) else str(key))
    return sorted(done)

  return client.run(executed)


class RunnerOptionsTest(tf.test.TestCase):
  """`--runner` resolution and the Dask partitioning, without a cluster."""

  def test_runner_options_are_known_once_its_module_is_imported(self):
    for runner in (_DASK, 'DaskRunner', 'dask'):
      args = pipeline.resolve_runner([f'--runner={runner}', '--dask_client_address', 'tcp://127.0.0.1:1',
                                      '--dask_npartitions', '16'])
      self.assertIn(f'--runner={_DASK}', args)
      unknown, known = pipeline.unknown_options(args)
      self.assertEqual(unknown, [])
      self.assertIn('--dask_client_address', known)

  def test_beam_short_names_keep_their_value(self):
    args = ['--runner', 'DirectRunner', '--direct_num_workers=2']
    self.assertEqual(pipeline.resolve_runner(args), args)
    self.assertEqual(pipeline.runner_path('flink'), 'apache_beam.runners.portability.flink_runner.FlinkRunner')
    self.assertEqual(pipeline.runner_path('my.module.MyRunner'), 'my.module.MyRunner')

  def test_runner_that_cannot_be_imported_is_one_error_line(self):
    with mock.patch.object(convert, '_log') as log:
      status = convert.main(['--source=folder', f'--input_dir={self.get_temp_dir()}', '--split=train',
                             f'--output_dir={self.get_temp_dir()}', '--runner=no_such_package.runner.MyRunner'])
    self.assertEqual(status, 2)
    log.assert_called_once()
    self.assertRegex(log.call_args[0][0], r"^\[train\] ERROR: --runner=no_such_package.runner.MyRunner: its module "
                     r"no_such_package.runner cannot be imported \(No module named 'no_such_package'\); install ")

  def test_a_mistyped_dask_option_is_still_caught(self):
    with mock.patch.object(convert, '_log') as log:
      status = convert.main(['--source=folder', f'--input_dir={self.get_temp_dir()}', '--split=train',
                             f'--output_dir={self.get_temp_dir()}', '--runner=DaskRunner',
                             '--dask_npartition=4'])
    self.assertEqual(status, 2)
    self.assertIn('--dask_npartition (did you mean --dask_npartitions?)', log.call_args[0][0])

  def test_every_shard_gets_a_partition_unless_the_user_chose(self):
    def dask_options(*args, num_elements=40):
      built = pipeline.make_pipeline(['--runner=DaskRunner', *args], num_elements=num_elements)
      return built.options.view_as(dask_runner.DaskOptions)
    self.assertEqual(dask_options().npartitions, 40)
    self.assertEqual(dask_options('--dask_npartitions=3').npartitions, 3)
    chosen = dask_options('--dask_partition_size=5')
    self.assertEqual((chosen.npartitions, chosen.partition_size), (None, 5))
    # Other runners are left alone.
    built = pipeline.make_pipeline(['--runner=FlinkRunner'], num_elements=40)
    self.assertEqual(built.options.view_as(pipeline_options.StandardOptions).runner, 'FlinkRunner')
    self.assertNotIn('npartitions', built.options.get_all_options(drop_default=True))


class DaskClusterTest(tf.test.TestCase):

  def test_cli_on_a_two_worker_cluster_matches_the_local_run(self):
    root = self.get_temp_dir()
    videos = os.path.join(root, 'videos')
    for label in ('left', 'right'):
      for i in range(3):
        video_fixtures.write_video(os.path.join(videos, label, f'{label}{i}.mp4'), num_frames=4)
    common = ['--source=folder', f'--input_dir={videos}', '--split=train', '--num_shards=4',
              '--progress_interval=0']
    scheduler_file = os.path.join(root, 'scheduler.json')
    with contextlib.ExitStack() as stack:
      # Closed in reverse: the test's client before the cluster it talks to.
      cluster = stack.enter_context(local_cluster.ProcessGroup(os.path.join(root, 'logs')))
      # A port of its own choosing, published in the file: no race for a free port.
      cluster.start('scheduler', local_cluster.python_command(
          '-m', 'dask', 'scheduler', '--host=127.0.0.1', '--port=0', '--no-dashboard',
          f'--scheduler-file={scheduler_file}'))
      cluster.wait_for(lambda: os.path.exists(scheduler_file), 'the scheduler file', 120, watch=['scheduler'])
      with open(scheduler_file) as f:
        address = json.load(f)['address']
      self.assertStartsWith(address, 'tcp://127.0.0.1:')
      for name in ('worker1', 'worker2'):
        # One thread each and no nanny: two plain processes, each converting one shard at a time.
        cluster.start(name, local_cluster.python_command(
            '-m', 'dask', 'worker', address, '--nthreads=1', '--no-nanny', '--no-dashboard', '--host=127.0.0.1',
            f'--name={name}'))

      # Meanwhile the reference: the same inputs converted locally (in this process).
      local = os.path.join(root, 'local')
      with mock.patch.object(convert, '_log'):
        self.assertEqual(convert.main(common + [f'--output_dir={local}']), 0)

      client = stack.enter_context(distributed.Client(address, timeout=60))
      cluster.wait_for(lambda: len(client.scheduler_info()['workers']) == 2, 'both workers to register', 120,
                       watch=['scheduler', 'worker1', 'worker2'])

      on_dask = os.path.join(root, 'dask')
      cluster.start('convert', local_cluster.python_command(
          '-m', 'data_tools.convert', *common, f'--output_dir={on_dask}',
          '--runner', 'apache_beam.runners.dask.dask_runner.DaskRunner', '--dask_client_address', address))
      status = cluster.wait('convert', timeout=300)
      log = cluster.log('convert')
      self.assertEqual(status, 0, log)
      self.assertIn('[train] 6 of 6 inputs converted; 0 failed.', log)
      self.assertNotIn('Traceback', log)
      bundles = _bundles_per_worker(client)

    self.assertLen(bundles, 2)
    for worker, partitions in bundles.items():
      self.assertNotEmpty(partitions, f'{worker} ran no conversion bundle: {bundles}')
    # One partition per shard (the default this project sets), split between the workers.
    self.assertCountEqual(sorted(set().union(*map(set, bundles.values()))), [0, 1, 2, 3])
    expected = _output_files(local)
    self.assertCountEqual(expected, ['label_map.txt', 'report_train.jsonl'] +
                          [f'train-{i:05d}-of-00004.tfrecord' for i in range(4)])
    self.assertEqual(_output_files(on_dask), expected)
    self.assertEmpty([p for p in glob.glob(os.path.join(on_dask, '**', '*'), recursive=True)
                      if re.search(r'\.tmp-', p)])


if __name__ == '__main__':
  tf.test.main()
