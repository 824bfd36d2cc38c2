"""Tests for data_tools.pipeline with a custom per-item converter (the AVA converter plugs in the same way)."""

import os

import tensorflow as tf

from data_tools import pipeline
from data_tools import report


class _TwoRecordsPerItem(pipeline.ItemConverter):
  """Emits two records per item (like several keyframe clips per video); items named 'bad*' fail."""

  def fingerprint(self):
    return 'two-records-v1'

  def convert(self, payload):
    if payload.startswith('bad'):
      raise report.ConversionError(f'{payload}: no boxes', reason='missing file')
    return pipeline.Converted(records=[f'{payload}:0'.encode(), f'{payload}:1'.encode()], details={'n': 2})

  def describe(self, payload):
    return {'payload': payload}


class _Crashes(_TwoRecordsPerItem):

  def convert(self, payload):
    raise ZeroDivisionError('bug')


class PipelineTest(tf.test.TestCase):

  def test_custom_converter_shards_and_report(self):
    out = self.get_temp_dir()
    items = [pipeline.WorkItem(f'id{i}', f'item{i}') for i in range(5)] + [pipeline.WorkItem('idbad', 'bad')]
    result = pipeline.run(items, _TwoRecordsPerItem(), output_dir=out, prefix='clips', num_shards=2,
                          progress_interval=0, log=lambda _: None)
    records = []
    for path in result.shard_paths:
      records += list(tf.data.TFRecordDataset(path).as_numpy_iterator())
    self.assertCountEqual(records, [f'item{i}:{k}'.encode() for i in range(5) for k in (0, 1)])
    by_id = {e.item_id: e for e in result.entries}
    self.assertEqual(by_id['idbad'].reason, report.MISSING_FILE)
    self.assertEqual(by_id['idbad'].details, {'payload': 'bad'})
    self.assertEqual(by_id['id0'].details, {'payload': 'item0', 'n': 2, 'num_records': 2})
    self.assertEqual(result.num_failed, 1)
    with open(result.report_path) as f:
      self.assertEqual(report.loads(f.read()), sorted(result.entries, key=lambda e: e.item_id))
    self.assertEqual(os.path.basename(result.report_path), 'report_clips.jsonl')

  def test_resumed_run_reports_only_the_shards_it_wrote(self):
    out = self.get_temp_dir()
    items = [pipeline.WorkItem(f'id{i}', f'item{i}') for i in range(7)] + [pipeline.WorkItem('idbad', 'bad')]
    first = pipeline.run(items, _TwoRecordsPerItem(), output_dir=out, prefix='clips', num_shards=4,
                         progress_interval=0, log=lambda _: None)
    self.assertEqual((first.converted_shards, first.skipped_shards), (4, 0))
    self.assertCountEqual(first.written_entries, first.entries)
    # The failed input is fixed (as when a missing download is added): only its shard is redone.
    items[-1] = pipeline.WorkItem('idbad', 'fixed')
    second = pipeline.run(items, _TwoRecordsPerItem(), output_dir=out, prefix='clips', num_shards=4,
                          progress_interval=0, log=lambda _: None)
    self.assertEqual((second.converted_shards, second.skipped_shards), (1, 3))
    redone = [e.shard for e in second.entries if e.item_id == 'idbad'][0]
    self.assertCountEqual([e.item_id for e in second.written_entries],
                          [e.item_id for e in second.entries if e.shard == redone])
    self.assertLess(len(second.written_entries), len(second.entries))
    self.assertEqual(second.num_failed, 0)

  def test_unexpected_errors_are_reported_not_raised(self):
    result = pipeline.run([pipeline.WorkItem('a', 'a')], _Crashes(), output_dir=self.get_temp_dir(), prefix='x',
                          num_shards=1, progress_interval=0, log=lambda _: None)
    self.assertEqual(result.entries[0].reason, report.UNEXPECTED_ERROR)
    self.assertEqual(result.entries[0].message, 'ZeroDivisionError: bug')

  def test_rejects_empty_input(self):
    with self.assertRaisesRegex(ValueError, 'empty'):
      pipeline.run([], _TwoRecordsPerItem(), output_dir=self.get_temp_dir(), prefix='x', num_shards=1)

  def test_format_progress(self):
    self.assertEqual(pipeline.format_progress(40, 100, 20.0, 'train'),
                     '[train] 40/100 items (40.0%), 2.00 items/s, ETA 0:00:30')
    self.assertEqual(pipeline.format_progress(0, 100, 5.0, 'train', 'videos'),
                     '[train] 0/100 videos (0.0%), 0.00 videos/s')


if __name__ == '__main__':
  tf.test.main()
