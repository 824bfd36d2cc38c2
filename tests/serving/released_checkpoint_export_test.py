"""Proof that a released CVRL backbone exports for TF Serving and extracts Model Garden's own features.

A randomised Model Garden `resnet_3d` in the CVRL configuration, saved in the released layout
(`tests/utils/released_checkpoint_test.save_release`), goes through `export_saved_model` (backbone-only: features
alone are served) and `extract_features` (its Embedder and its TFRecord command); the features must equal Model
Garden's on the same 16x224x224 clips to 1e-5 relative in float32.
"""
import os

import numpy as np
import tensorflow as tf

from data_tools import sequence_example
from official_cvrl import extract_features
from official_cvrl.serving import export_module
from official_cvrl.serving import export_saved_model
from tests.utils import released_checkpoint_test as released

_TOLERANCE = released.TOLERANCE


class ReleasedCheckpointExportTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.root = tf.compat.v1.test.get_temp_dir()
    cls.model_garden, cls.folder, _ = released.save_release(cls.root)

  def test_export_and_feature_extraction_give_model_garden_features_at_16x224(self):
    override = ('{task: {train_data: {feature_shape: [16, 224, 224, 3]}, validation_data: {feature_shape: '
                '[16, 224, 224, 3], num_test_clips: 1, num_test_crops: 1}}}')
    version = export_saved_model.run_export('cvrl_linear_eval_kinetics400', self.folder,
                                            os.path.join(self.root, 'export'), params_override=override)
    embedder = extract_features.Embedder(version)
    self.assertEqual((embedder.num_frames, embedder.crop_size), (16, 224))

    # serve_video_clips, as extract_features calls it: Model Garden's features of the same clip.
    rng = np.random.default_rng(2)
    clip = rng.integers(0, 256, [1, 16, 224, 224, 3], dtype=np.uint8)
    outputs = embedder(clip[:, np.newaxis])
    self.assertEqual(set(outputs), {export_module.FEATURES, export_module.NORMALIZED_FEATURES})  # No random head.
    expected = released.pooled(self.model_garden, clip)
    self.assertLess(released.relative_error(outputs[export_module.FEATURES], expected), _TOLERANCE)

    # The extraction CLI on a TFRecord video: the clip it samples, through Model Garden, gives its features.
    frames = rng.integers(0, 256, [31, 224, 224, 3], dtype=np.uint8)
    record = sequence_example.make_sequence_example(
        [sequence_example.encode_jpeg(frame) for frame in frames], video_id='v0', height=224, width=224, fps=25.0,
        source_fps=25.0, label_indices=[3]).SerializeToString()
    records = os.path.join(self.root, 'videos.tfrecord')
    with tf.io.TFRecordWriter(records) as writer:
      writer.write(record)
    output = os.path.join(self.root, 'features.npz')
    self.assertEqual(extract_features.run(version, records, output, input_format='tfrecord',
                                          progress_interval=0), 1)
    sampled = export_module.sample_clips_from_example(tf.constant(record), 1, 16, 2, 224)['clips'].numpy()
    with np.load(output) as data:
      self.assertEqual(list(data['labels']), [3])
      expected = released.pooled(self.model_garden, sampled)
      self.assertLess(released.relative_error(data[export_module.FEATURES], expected), _TOLERANCE)


if __name__ == '__main__':
  tf.test.main()
