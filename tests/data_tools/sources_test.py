"""Tests for data_tools.sources: every dataset layout is listed into the expected records.

Listing never opens videos, so placeholder files stand in for them here.
"""

import os

import tensorflow as tf

from data_tools import sources


def _touch(root: str, relative: str, text: str = 'x') -> str:
  path = os.path.join(root, relative)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w') as f:
    f.write(text)
  return path


class SourcesTest(tf.test.TestCase):

  def test_folder_per_class(self):
    root = self.get_temp_dir()
    for relative in ['walk/b.mp4', 'walk/a.avi', 'run/x/c.webm', 'run/notes.txt', 'loose.mp4', 'run/.hidden.mp4']:
      _touch(root, relative)
    listing = sources.list_folder(root)
    self.assertEqual([r.video_id for r in listing.records], ['run/x/c.webm', 'walk/a.avi', 'walk/b.mp4'])
    self.assertEqual([r.label for r in listing.records], ['run', 'walk', 'walk'])
    self.assertEqual(listing.records[1].path, os.path.join(root, 'walk/a.avi'))
    self.assertEqual(listing.class_names, ['run', 'walk'])
    self.assertLen(listing.notes, 2)  # loose.mp4 has no class; notes.txt is not a video.
    self.assertIn('loose.mp4', listing.notes[0])

  def test_folder_without_classes_fails(self):
    root = self.get_temp_dir()
    _touch(root, 'a.mp4')
    with self.assertRaisesRegex(ValueError, 'no class sub-folders'):
      sources.list_folder(root)
    with self.assertRaisesRegex(FileNotFoundError, 'not a folder'):
      sources.list_folder(os.path.join(root, 'absent'))

  def test_kinetics_matches_cut_and_full_downloads(self):
    root = self.get_temp_dir()
    csv_path = _touch(root, 'train.csv', 'label,youtube_id,time_start,time_end,split\n'
                      'abseiling,aaa,10,20,train\n'
                      'air drumming,bbb,3,13,train\n'
                      'abseiling,ccc,0,10,train\n')
    _touch(root, 'videos/abseiling/aaa_000010_000020.mp4')
    _touch(root, 'videos/bbb.mkv')
    listing = sources.list_kinetics(csv_path, os.path.join(root, 'videos'))
    aaa, bbb, ccc = listing.records
    self.assertEqual((aaa.video_id, aaa.label, aaa.start, aaa.end), ('aaa_000010_000020', 'abseiling', None, None))
    self.assertTrue(aaa.path.endswith('aaa_000010_000020.mp4'))
    self.assertEqual((bbb.video_id, bbb.label, bbb.start, bbb.end), ('bbb_000003_000013', 'air drumming', 3.0, 13.0))
    self.assertTrue(bbb.path.endswith('bbb.mkv'))
    self.assertEqual(ccc.path, '')
    self.assertIn('ccc_000000_000010', ccc.missing_hint)
    self.assertEqual(listing.class_names, ['abseiling', 'air drumming'])

  def test_kinetics_without_labels_and_bad_csv(self):
    root = self.get_temp_dir()
    os.makedirs(os.path.join(root, 'videos'))
    unlabeled = _touch(root, 'test.csv', 'youtube_id,time_start,time_end,split\nzzz,1,11,test\n')
    listing = sources.list_kinetics(unlabeled, os.path.join(root, 'videos'))
    self.assertIsNone(listing.records[0].label)
    self.assertIsNone(listing.class_names)
    bad = _touch(root, 'bad.csv', 'name,url\na,b\n')
    with self.assertRaisesRegex(ValueError, 'not a Kinetics annotation CSV'):
      sources.list_kinetics(bad, os.path.join(root, 'videos'))

  def test_ucf101_official_splits(self):
    root = self.get_temp_dir()
    _touch(root, 'lists/classInd.txt', '1 ApplyEyeMakeup\n2 HandstandPushups\n3 JumpRope\n4 JumpingJack\n')
    _touch(root, 'lists/trainlist01.txt', 'ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\n'
                                          'HandstandPushups/v_HandStandPushups_g08_c01.avi 2\n')
    _touch(root, 'lists/testlist01.txt', 'JumpRope/v_JumpRope_g01_c01.avi\n')
    _touch(root, 'UCF-101/ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi')
    _touch(root, 'UCF-101/HandstandPushups/v_HandStandPushups_g08_c01.avi')
    train = sources.list_ucf101(os.path.join(root, 'UCF-101'), os.path.join(root, 'lists'), 'train', 1)
    self.assertEqual([r.label for r in train.records], ['ApplyEyeMakeup', 'HandstandPushups'])
    self.assertTrue(all(r.path for r in train.records))
    # classInd order is kept (JumpRope before JumpingJack, unlike a case-sensitive sort).
    self.assertEqual(train.class_names, ['ApplyEyeMakeup', 'HandstandPushups', 'JumpRope', 'JumpingJack'])
    self.assertTrue(train.official_order)
    test = sources.list_ucf101(os.path.join(root, 'UCF-101'), os.path.join(root, 'lists'), 'test', 1)
    self.assertEqual((test.records[0].label, test.records[0].path), ('JumpRope', ''))
    with self.assertRaisesRegex(ValueError, 'train.*test'):
      sources.list_ucf101(os.path.join(root, 'UCF-101'), os.path.join(root, 'lists'), 'val', 1)

  def test_hmdb51_split_tags(self):
    root = self.get_temp_dir()
    _touch(root, 'splits/brush_hair_test_split1.txt', 'a.avi 1\nb.avi 2\nc.avi 0\n')
    _touch(root, 'splits/cartwheel_test_split1.txt', 'd.avi 1\n')
    _touch(root, 'splits/cartwheel_test_split2.txt', 'd.avi 2\n')
    for relative in ['hmdb/brush_hair/a.avi', 'hmdb/brush_hair/b.avi', 'hmdb/cartwheel/d.avi']:
      _touch(root, relative)
    train = sources.list_hmdb51(os.path.join(root, 'hmdb'), os.path.join(root, 'splits'), 'train', 1)
    self.assertEqual([(r.video_id, r.label) for r in train.records],
                     [('brush_hair/a.avi', 'brush_hair'), ('cartwheel/d.avi', 'cartwheel')])
    self.assertEqual(train.class_names, ['brush_hair', 'cartwheel'])
    test = sources.list_hmdb51(os.path.join(root, 'hmdb'), os.path.join(root, 'splits'), 'test', 1)
    self.assertEqual([r.video_id for r in test.records], ['brush_hair/b.avi'])
    test2 = sources.list_hmdb51(os.path.join(root, 'hmdb'), os.path.join(root, 'splits'), 'test', 2)
    self.assertEqual([r.video_id for r in test2.records], ['cartwheel/d.avi'])

  def test_unlabeled_list_and_folder(self):
    root = self.get_temp_dir()
    _touch(root, 'footage/day1/a.mp4')
    _touch(root, 'footage/b.mov')
    list_file = _touch(root, 'list.txt', '# my clips\nfootage/b.mov\n\n/abs/c.mp4\n')
    listing = sources.list_unlabeled(list_file)
    self.assertEqual([(r.video_id, r.path, r.label) for r in listing.records],
                     [('footage/b.mov', os.path.join(root, 'footage/b.mov'), None), ('/abs/c.mp4', '/abs/c.mp4', None)])
    folder = sources.list_unlabeled(os.path.join(root, 'footage'))
    self.assertEqual([r.video_id for r in folder.records], ['b.mov', 'day1/a.mp4'])
    self.assertIsNone(folder.class_names)


if __name__ == '__main__':
  tf.test.main()
