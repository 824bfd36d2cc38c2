"""Tests of the demo driver's pieces (official_cvrl/demo.py) that do not need minutes of training.

The stages themselves are the project's command-line tools, each tested on its own; here: the results table is
built from the runs' real summary files, a failing stage stops the demo with its log, and finished stages are
skipped.
"""
import json
import os
import sys
import threading
import time

from absl import flags
from absl.testing import flagsaver
import tensorflow as tf

from official_cvrl import demo


def _write_scalars(directory, step_values):
  writer = tf.summary.create_file_writer(directory)
  with writer.as_default():
    for step, values in step_values.items():
      for tag, value in values.items():
        tf.summary.scalar(tag, value, step=step)
  writer.close()


class DemoTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()

  def setUp(self):
    super().setUp()
    demo._STAGES = demo._Stages()  # A failure in one test must not stop the next test's stages.

  def test_results_table_reads_the_last_evaluation_of_every_run(self):
    root = self.get_temp_dir()
    _write_scalars(os.path.join(root, 'pretrain', 'validation'),
                   {500: {'contrastive_accuracy': 0.1}, 1000: {'contrastive_accuracy': 0.25, 'contrastive_loss': 3.5}})
    _write_scalars(os.path.join(root, 'lin_cvrl', 'validation'),
                   {100: {'accuracy': 0.5}, 500: {'accuracy': 0.875, 'top_5_accuracy': 1.0}})
    _write_scalars(os.path.join(root, 'lin_random', 'validation'), {500: {'accuracy': 0.5, 'top_5_accuracy': 0.9}})
    _write_scalars(os.path.join(root, 'det_cvrl', 'validation'), {400: {'frame_map': 0.75}})
    _write_scalars(os.path.join(root, 'det_random', 'validation'), {400: {'frame_map': 0.4321}})
    with flagsaver.flagsaver(seed=3):
      table = demo.results_table(
          root, os.path.join(root, 'pretrain'),
          {'CVRL pretrained': os.path.join(root, 'lin_cvrl'), 'random init': os.path.join(root, 'lin_random')},
          '/export', {'CVRL pretrained': os.path.join(root, 'det_cvrl'),
                      'random init': os.path.join(root, 'det_random')},
          stage_times=[{'stage': '3. pretraining', 'wall_seconds': 120.4, 'cpu_seconds': 230.0}], total_seconds=300)
    self.assertIn('| CVRL pretrained | 87.5% | 100.0% |', table)
    self.assertIn('| random init | 50.0% | 90.0% |', table)
    self.assertIn('| random init | 43.2% |', table)
    self.assertIn('held-out contrastive accuracy (positive ranked first): 25.0%', table)
    with open(os.path.join(root, 'results.json')) as f:
      results = json.load(f)
    self.assertEqual(results['seed'], 3)
    self.assertAllClose(results['linear_eval_test'][0]['top_1'], 0.875)
    self.assertAllClose([r['frame_map'] for r in results['detection_frame_map']], [0.75, 0.4321])
    self.assertAllClose(results['pretrain_validation_contrastive_loss'], 3.5)
    self.assertEqual(results['stage_seconds'], [{'stage': '3. pretraining', 'wall_seconds': 120.4,
                                                 'cpu_seconds': 230.0}])
    self.assertEqual(results['total_seconds'], 300)
    self.assertIn('| 3. pretraining | 120 | 230 |', table)
    with open(os.path.join(root, 'results.md')) as f:
      self.assertIn(table, f.read())

  def test_results_table_without_detection_has_no_detection_rows(self):
    root = self.get_temp_dir()
    _write_scalars(os.path.join(root, 'lin', 'validation'), {1: {'accuracy': 0.5, 'top_5_accuracy': 1.0}})
    table = demo.results_table(root, os.path.join(root, 'missing'), {'x': os.path.join(root, 'lin')}, '/e')
    self.assertNotIn('detection', table)
    self.assertIn('positive ranked first): n/a', table)

  def test_results_table_has_the_retrieval_rows_of_evaluate_retrieval(self):
    root = self.get_temp_dir()
    _write_scalars(os.path.join(root, 'lin', 'validation'), {1: {'accuracy': 0.5, 'top_5_accuracy': 1.0}})
    files = {}
    for name, recall in (('CVRL pretrained', [0.625, 0.875, 0.9, 0.95, 1.0]), ('random init', [0.25] * 5)):
      path = os.path.join(root, name.split()[0], 'retrieval_results.json')
      os.makedirs(os.path.dirname(path))
      with open(path, 'w') as f:
        json.dump({'mean': dict(zip(['1', '5', '10', '20', '50'], recall))}, f)
      files[name] = path
    files['not run'] = os.path.join(root, 'missing.json')
    table = demo.results_table(root, os.path.join(root, 'missing'), {'x': os.path.join(root, 'lin')}, '/e',
                               retrieval_files=files)
    self.assertIn('| CVRL pretrained | 62.5% | 87.5% | 90.0% | 95.0% | 100.0% |', table)
    self.assertIn('| random init | 25.0% | 25.0% | 25.0% | 25.0% | 25.0% |', table)
    self.assertIn('| not run | n/a | n/a | n/a | n/a | n/a |', table)
    with open(os.path.join(root, 'results.json')) as f:
      self.assertAllClose(json.load(f)['retrieval_test_vs_train'][0]['R@5'], 0.875)

  def test_failing_stage_exits_with_its_code_and_keeps_the_log(self):
    log = os.path.join(self.get_temp_dir(), 'logs', 'stage.log')
    command = [sys.executable, '-c', 'import sys; print("error: no such file x.mp4"); sys.exit(3)']
    with self.assertRaises(SystemExit) as raised:
      demo.run_stage('broken', command, log)
    self.assertEqual(raised.exception.code, 3)
    with open(log) as f:
      self.assertIn('error: no such file x.mp4', f.read())

  def test_stage_time_counts_the_stage_process_own_cpu(self):
    log = os.path.join(self.get_temp_dir(), 'logs', 'busy.log')
    # ~0.5 s of CPU in the child, while this process sleeps in a thread: only the child's CPU may be counted.
    sleeper = threading.Thread(target=time.sleep, args=(0.2,))
    sleeper.start()
    demo.run_stage('busy', [sys.executable, '-c', 'import time\nt = time.process_time()\n'
                            'while time.process_time() - t < 0.5: pass'], log)
    sleeper.join()
    (entry,) = demo._STAGES.times
    self.assertEqual(entry['stage'], 'busy')
    self.assertGreaterEqual(entry['cpu_seconds'], 0.45)
    self.assertGreaterEqual(entry['wall_seconds'], entry['cpu_seconds'] - 0.1)

  def test_a_failing_lane_stops_the_other_and_exits_with_its_code(self):
    logs = self.get_temp_dir()
    started = time.time()

    def failing():
      time.sleep(1.0)  # Let the other lane's stage start first.
      demo.run_stage('broken', [sys.executable, '-c', 'import sys; sys.exit(4)'], os.path.join(logs, 'a.log'))

    def long_running():
      demo.run_stage('long', [sys.executable, '-c', 'import time; print("started", flush=True); time.sleep(120)'],
                     os.path.join(logs, 'b.log'))
      demo.run_stage('never', [sys.executable, '-c', 'open("never_ran", "w")'], os.path.join(logs, 'c.log'))

    with self.assertRaises(SystemExit) as raised:
      demo.run_lanes([('a', failing), ('b', long_running)], parallel=True)
    self.assertEqual(raised.exception.code, 4)
    self.assertLess(time.time() - started, 60)  # The 120 s stage was stopped, not waited for.
    self.assertFalse(os.path.exists(os.path.join(logs, 'c.log')))
    self.assertEqual(demo._STAGES.processes, [])
    with open(os.path.join(logs, 'b.log')) as f:
      self.assertIn('started', f.read())

  def test_lanes_in_order_run_every_stage_and_record_each(self):
    logs = self.get_temp_dir()
    order = []

    def lane(name):
      def run():
        demo.run_stage(name, [sys.executable, '-c', f'print("{name}")'], os.path.join(logs, f'{name}.log'))
        order.append(name)
      return run

    demo.run_lanes([('a', lane('first')), ('b', lane('second'))], parallel=False)
    self.assertEqual(order, ['first', 'second'])
    demo.run_lanes([('a', lane('third')), ('b', lane('fourth'))], parallel=True)
    self.assertCountEqual(order, ['first', 'second', 'third', 'fourth'])
    self.assertCountEqual([t['stage'] for t in demo._STAGES.times], ['first', 'second', 'third', 'fourth'])

  def test_a_stage_both_lanes_need_runs_once(self):
    calls = []

    def stage():
      calls.append(1)
      time.sleep(0.2)
      return 'records'

    once = demo._Once(stage)
    results = []
    threads = [threading.Thread(target=lambda: results.append(once())) for _ in range(2)]
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    self.assertEqual((calls, results), ([1], ['records', 'records']))

  def test_finished_detection_data_is_not_regenerated(self):
    root = self.get_temp_dir()
    records = os.path.join(root, 'detection_tfrecords')
    os.makedirs(records)
    with open(os.path.join(records, 'label_map.pbtxt'), 'w') as f:
      f.write('item {\n  name: "a"\n  id: 1\n}\n')
    self.assertEqual(demo.detection_data(root), records)
    self.assertEqual(os.listdir(records), ['label_map.pbtxt'])
    self.assertFalse(os.path.exists(os.path.join(root, 'logs')))


if __name__ == '__main__':
  tf.test.main()
