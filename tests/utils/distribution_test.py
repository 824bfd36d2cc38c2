"""In-process checks of `utils.distribution`: device checks, CPU replicas, and the non-chief checkpoint manager.

The multi-process behaviour (two real workers, the driver's `--cpu_devices`) is in tests/train_multi_worker_test.py.
Each test here takes about a second.
"""

import os

import tensorflow as tf

from official.common import distribute_utils
from official.core import train_lib
from official_cvrl.utils import distribution
from official_cvrl.utils import errors


class CheckDevicesTest(tf.test.TestCase):

  def test_more_gpus_than_visible_names_the_key_and_the_fix(self):
    visible = len(tf.config.list_physical_devices('GPU'))
    for strategy in ('mirrored', 'one_device', 'off'):
      with self.assertRaisesRegex(errors.UserInputError,
                                  rf'^runtime.num_gpus={visible + 2} but TensorFlow sees {visible} GPU\(s\).*'
                                  rf'Set runtime.num_gpus={visible}'):
        distribution.check_devices(strategy, visible + 2, 1)

  def test_settings_the_machine_can_run_pass(self):
    distribution.check_devices('mirrored', 0, 1)
    distribution.check_devices('mirrored', 0, 2)
    # Model Garden ignores num_gpus for these; TPU and multi-worker strategies find their own devices.
    distribution.check_devices('tpu', 8, 1)
    distribution.check_devices('multi_worker_mirrored', 8, 1)

  def test_cpu_devices_only_with_mirrored_on_the_cpu(self):
    with self.assertRaisesRegex(errors.UserInputError, r'^--cpu_devices=2 needs runtime.distribution_strategy='
                                r'mirrored and runtime.num_gpus=0'):
      distribution.check_devices('multi_worker_mirrored', 0, 2)


class CpuReplicasTest(tf.test.TestCase):

  def test_mirrored_over_every_logical_cpu(self):
    cpus = tf.config.list_logical_devices('CPU')
    if len(cpus) != 2:
      self.skipTest('needs the 2 logical CPUs that tests/conftest.py configures')
    strategy = distribution.get_distribution_strategy(2, distribution_strategy='mirrored', num_gpus=0)
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    self.assertEqual([d.rsplit('/', 1)[-1] for d in strategy.extended.worker_devices], ['device:CPU:0', 'device:CPU:1'])
    # Without the option Model Garden's choice stands: one CPU device.
    self.assertEqual(distribution.get_distribution_strategy(
        1, distribution_strategy='mirrored', num_gpus=0).num_replicas_in_sync, 1)

  def test_split_after_devices_exist_is_a_user_error(self):
    tf.constant(1.0)  # Devices exist from here on.
    with self.assertRaisesRegex(errors.UserInputError, r"--cpu_devices=3: TensorFlow's devices were already"):
      distribution.split_cpu(3)

  def test_patches_are_undone(self):
    originals = (distribute_utils.get_distribution_strategy, train_lib.run_experiment)
    with distribution.model_garden_patched(2):
      self.assertIs(train_lib.run_experiment, distribution.run_experiment)
      self.assertIsNot(distribute_utils.get_distribution_strategy, originals[0])
    self.assertEqual((distribute_utils.get_distribution_strategy, train_lib.run_experiment), originals)


class ChiefRestoringCheckpointManagerTest(tf.test.TestCase):

  def test_restores_the_chiefs_checkpoint_and_saves_apart(self):
    chief_dir = os.path.join(self.get_temp_dir(), 'model_dir')
    scratch = os.path.join(self.get_temp_dir(), 'scratch')
    step = tf.Variable(0, dtype=tf.int64)
    weight = tf.Variable(1.0)
    checkpoint = tf.train.Checkpoint(step=step, weight=weight)
    step.assign(6)
    weight.assign(3.5)
    saved = tf.train.CheckpointManager(checkpoint, chief_dir, max_to_keep=1, step_counter=step).save()

    step.assign(0)
    weight.assign(1.0)
    initialized = []
    manager = distribution._ChiefRestoringCheckpointManager(  # pylint: disable=protected-access
        checkpoint, directory=scratch, chief_directory=chief_dir, max_to_keep=1, step_counter=step,
        init_fn=lambda: initialized.append(True))
    self.assertEqual(manager.restore_or_initialize(), saved)
    self.assertEqual((int(step.numpy()), float(weight.numpy())), (6, 3.5))
    self.assertEmpty(initialized)
    manager.save()
    self.assertEqual(os.path.dirname(tf.train.latest_checkpoint(scratch)), scratch)
    self.assertEqual(tf.train.latest_checkpoint(chief_dir), saved, 'the chief\'s folder must stay untouched')

  def test_initializes_when_the_chief_has_no_checkpoint(self):
    initialized = []
    manager = distribution._ChiefRestoringCheckpointManager(  # pylint: disable=protected-access
        tf.train.Checkpoint(v=tf.Variable(1.0)), directory=os.path.join(self.get_temp_dir(), 'scratch'),
        chief_directory=os.path.join(self.get_temp_dir(), 'empty'), max_to_keep=1,
        init_fn=lambda: initialized.append(True))
    self.assertIsNone(manager.restore_or_initialize())
    self.assertEqual(initialized, [True])

  def test_scratch_folder_is_removed(self):
    with distribution._scratch_dir('worker1') as path:  # pylint: disable=protected-access
      with open(os.path.join(path, 'ckpt-1.index'), 'w') as f:
        f.write('x')
      self.assertIn('cvrl_worker1_checkpoint_copy_', path)
    self.assertFalse(os.path.exists(path))


if __name__ == '__main__':
  tf.test.main()
