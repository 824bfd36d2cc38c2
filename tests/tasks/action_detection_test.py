"""End-to-end test of the action detection task through Model Garden's train_lib on synthetic keyframes.

Tiny everything: R3D-18 at width 0.25 without stem pool (the demo backbone, res5 dilated), clips [4, 32, 32, 3],
batch 2, three training steps, then the frame-mAP evaluation of the validation keyframes.
"""
import os

import numpy as np
import tensorflow as tf

from official.core import exp_factory
from official.core import task_factory
from official.core import train_lib
from official_cvrl import registry_imports  # pylint: disable=unused-import
from official_cvrl.dataloaders import detection_input
from official_cvrl.evaluation import ava_frame_map
from official_cvrl.tasks import action_detection
from data_tools import ava
from data_tools.synthetic import synthetic_detection
from tests.utils import checkpoints_test


class ActionDetectionTaskTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = os.path.join(tf.compat.v1.test.get_temp_dir(), 'detection_data')
    synthetic_detection.write_split(cls.root, 'train', 6, 1, seed=0, num_frames=8, size=32)
    synthetic_detection.write_split(cls.root, 'val', 3, 1, seed=0, num_frames=8, size=32)
    with open(os.path.join(cls.root, 'label_map.pbtxt'), 'w') as f:
      f.write(synthetic_detection.label_map_text())

  def _config(self, init_checkpoint=''):
    config = exp_factory.get_exp_config('cvrl_action_detection_demo')
    data = {'feature_shape': [4, 32, 32, 3], 'global_batch_size': 2, 'num_classes': 8, 'max_num_boxes': 5}
    config.override({
        'task': {
            'init_checkpoint': init_checkpoint,
            'train_data': dict(data, input_path=os.path.join(self.root, 'train-*'), shuffle_buffer_size=6),
            'validation_data': dict(data, input_path=os.path.join(self.root, 'val-*')),
            'evaluation': {'label_map_path': os.path.join(self.root, 'label_map.pbtxt')},
        },
        'trainer': {
            'train_steps': 3, 'steps_per_loop': 1, 'summary_interval': 1, 'checkpoint_interval': 3,
            'validation_interval': 3,
            'optimizer_config': {'learning_rate': {'cosine': {'decay_steps': 3, 'offset': 0}},
                                 'warmup': {'linear': {'warmup_steps': 0}}},
        },
    }, is_strict=True)
    config.validate()
    return config

  def test_train_and_eval_end_to_end(self):
    source = checkpoints_test.pretrain_model()
    checkpoints_test.randomize(source)
    pretrain_dir = os.path.join(self.get_temp_dir(), 'pretrain')
    checkpoints_test.save_like_model_garden(source, pretrain_dir)
    pretrained = {v.name: v.numpy() for v in source.backbone.variables}
    model_dir = os.path.join(self.get_temp_dir(), 'detection')
    config = self._config(init_checkpoint=pretrain_dir)
    task = task_factory.get_task(config.task, logging_dir=model_dir)
    model, _ = train_lib.run_experiment(
        distribution_strategy=tf.distribute.get_strategy(), task=task, mode='train_and_eval', params=config,
        model_dir=model_dir)
    # The backbone was restored from the pretraining checkpoint (then trained a little).
    stem = model.backbone.get_layer('stem_conv').kernel
    self.assertAllClose(stem, pretrained[stem.name], atol=0.05)
    self.assertNotAllEqual(stem, pretrained[stem.name])
    with open(os.path.join(model_dir, 'frame_map', 'per_class_ap-3.tsv')) as f:
      table = f.read().splitlines()
    self.assertTrue(table[-1].startswith('mAP@0.5IOU\t'))
    self.assertBetween(float(table[-1].split('\t')[1]), 0.0, 1.0)
    self.assertEqual([line.split('\t')[1] for line in table[1:4]], ['1:move_000deg', '2:move_060deg', '3:move_120deg'])

  def test_evaluation_matches_the_evaluator_on_the_records(self):
    config = self._config()
    task = task_factory.get_task(config.task)
    model = task.build_model()
    dataset = task.build_inputs(config.task.validation_data)
    state = None
    expected = ava_frame_map.FrameMAPEvaluator(class_ids=list(range(8)))
    for features, labels in dataset:
      outputs = task.validation_step((features, labels), model)
      state = task.aggregate_logs(state, outputs)
      scores = task.inference_step(features, model).numpy()
      for i in range(len(scores)):
        gt = labels['gt_mask'][i].numpy() > 0
        rows, classes = np.nonzero(labels['gt_classes'][i].numpy()[gt])
        key = labels['keyframe_key'][i].numpy().decode()
        expected.add_groundtruth(key, labels['gt_boxes'][i].numpy()[gt][rows], classes)
        valid = features['box_mask'][i].numpy() > 0
        expected.add_box_scores(key, features['boxes'][i].numpy()[valid], scores[i][valid])
        # The background proposal (score 0.3) is below the 0.8 threshold: one proposal per actor and bystander.
        self.assertBetween(valid.sum() - gt.sum(), 0, 1)
    self.assertAllClose(task.reduce_aggregated_logs(state)['frame_map'], expected.evaluate().mean_ap)

  def test_synthetic_ava_movies_convert_train_and_evaluate(self):
    # The raw AVA layout (mp4 movies + CSVs) -> data_tools.ava -> training -> frame mAP, as the README's commands.
    raw = os.path.join(self.get_temp_dir(), 'ava_raw')
    synthetic_detection.write_ava_movies(raw, num_train_movies=2, num_val_movies=1, seconds=2, fps=8, size=32)
    records = os.path.join(self.get_temp_dir(), 'ava_records')
    settings = ava.ClipSettings(num_frames=4, temporal_stride=2, fps=8.0, short_side=32)
    for split, proposals in (('train', ''), ('val', os.path.join(raw, 'ava_val_predicted_boxes.csv'))):
      result = ava.convert(os.path.join(raw, f'ava_{split}.csv'), os.path.join(raw, 'label_map.pbtxt'),
                           os.path.join(raw, 'movies'), records, split, proposals=proposals, settings=settings,
                           num_shards=1, in_process=True)
      self.assertEqual((result.num_failed, len(result.entries)), (0, 4 if split == 'train' else 2))
    config = self._config()
    config.override({'task': {
        'train_data': {'input_path': os.path.join(records, 'train-*')},
        'validation_data': {'input_path': os.path.join(records, 'val-*')},
        'evaluation': {'label_map_path': os.path.join(records, 'label_map.pbtxt')}}}, is_strict=True)
    model_dir = os.path.join(self.get_temp_dir(), 'ava_detection')
    train_lib.run_experiment(distribution_strategy=tf.distribute.get_strategy(),
                             task=task_factory.get_task(config.task, logging_dir=model_dir), mode='train_and_eval',
                             params=config, model_dir=model_dir)
    with open(os.path.join(model_dir, 'frame_map', 'per_class_ap-3.tsv')) as f:
      table = f.read().splitlines()
    ground_truth_boxes = sum(int(line.split('\t')[2]) for line in table[1:-1])
    with open(os.path.join(raw, 'ava_val.csv')) as f:
      self.assertEqual(ground_truth_boxes, len(f.read().splitlines()))  # Every annotated val box was scored.
    self.assertBetween(float(table[-1].split('\t')[1]), 0.0, 1.0)
    self.assertIn('2 keyframes', table[-1])

  def test_loss_matches_numpy(self):
    rng = np.random.default_rng(0)
    classes = (rng.uniform(size=(2, 3, 4)) > 0.5).astype(np.float32)
    logits = rng.normal(size=(2, 3, 4)).astype(np.float32)
    mask = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
    x = logits.astype(np.float64)
    bce = np.maximum(x, 0) - x * classes + np.log1p(np.exp(-np.abs(x)))
    expected = (bce.mean(-1) * mask).sum() / mask.sum()
    self.assertAllClose(action_detection.sigmoid_cross_entropy(classes, logits, mask), expected, atol=1e-6)

  def test_train_parser_pads_jitters_and_builds_multi_hot(self):
    parser = detection_input.Parser(num_frames=4, temporal_stride=2, image_size=(16, 24), num_classes=8,
                                    max_num_boxes=3, box_jitter=0.0, flip_probability=0.0)
    decoder = detection_input.Decoder()
    record = next(iter(tf.data.TFRecordDataset(os.path.join(self.root, 'train-00000-of-00001.tfrecord'))))
    decoded = decoder.decode(record)
    features, labels = parser.parse_fn(True)(decoded)
    self.assertEqual(features['image'].shape, (4, 16, 24, 3))
    self.assertEqual(features['image'].dtype, tf.uint8)
    num_boxes = int(tf.shape(decoded['clip/keyframe/bbox/ymin'])[0])
    self.assertAllEqual(features['box_mask'], [1.0] * num_boxes + [0.0] * (3 - num_boxes))
    self.assertAllClose(features['boxes'][:num_boxes, 0], decoded['clip/keyframe/bbox/ymin'])
    expected = np.zeros([3, 8], np.float32)
    expected[decoded['clip/keyframe/label/box_index'].numpy(), decoded['clip/keyframe/label/class_index'].numpy()] = 1
    self.assertAllEqual(labels['classes'], expected)

  def test_box_ops(self):
    boxes = tf.constant([[0.1, 0.2, 0.5, 0.6]])
    self.assertAllClose(detection_input.flip_boxes(boxes), [[0.1, 0.4, 0.5, 0.8]])
    jittered = detection_input.jitter_boxes(tf.tile(boxes, [100, 1]), 0.1).numpy()
    # Each coordinate moves by at most 10% of the box size (0.4 in both directions).
    self.assertAllLessEqual(np.abs(jittered - boxes.numpy()), 0.04 + 1e-6)

  def test_paper_schedule(self):
    config = exp_factory.get_exp_config('cvrl_action_detection_ava')
    per_epoch = 235 * 897 // 32
    self.assertEqual(config.trainer.train_steps, 12 * per_epoch)
    lr = config.trainer.optimizer_config.learning_rate
    self.assertEqual(lr.type, 'stepwise')
    self.assertEqual(lr.stepwise.boundaries, [8 * per_epoch, 11 * per_epoch])
    self.assertAllClose(lr.stepwise.values, [0.2, 0.02, 0.002])
    self.assertEqual(config.task.train_data.global_batch_size, 32)
    self.assertEqual(tuple(config.task.train_data.feature_shape[:1]), (32,))
    self.assertEqual(config.task.train_data.temporal_stride, 2)
    self.assertEqual(config.task.train_data.num_classes, 60)
    self.assertEqual(config.task.model.backbone.r3d.res5_dilation, 2)
    self.assertTrue(config.task.init_checkpoint)


if __name__ == '__main__':
  tf.test.main()
