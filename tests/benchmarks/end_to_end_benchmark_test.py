"""Tests of benchmarks/end_to_end_benchmark.py: both sides run their whole step and give finite rates.

R3D-50 (Model Garden's resnet_3d has no smaller depth) on 4x32x32 clips, one pair per step, each measure timed
once: about 45 CPU-seconds, most of it tracing the three train steps (ours, ours without augmentation, Model
Garden's).
"""

import math

import tensorflow as tf

from benchmarks import end_to_end_benchmark


class EndToEndBenchmarkTest(tf.test.TestCase):

  def test_both_sides_run_the_same_backbone_and_give_finite_rates(self):
    pattern = end_to_end_benchmark.prepare_data(self.get_temp_dir(), num_videos=2, frames_per_video=12)
    settings = end_to_end_benchmark.Settings(
        file_pattern=pattern, clip_shape=(4, 32, 32, 3), per_replica_batch=1, warmup_steps=0, steps=1,
        input_seconds=0.2)
    strategy = end_to_end_benchmark.get_strategy('', '')
    sides = {name: end_to_end_benchmark.build_side(name, settings, strategy) for name in end_to_end_benchmark.SIDES}

    # The same architecture: Model Garden's configured resnet_3d has exactly our R3D-50's variables, in order.
    ours, model_garden = (sides[name].model.backbone.variables for name in end_to_end_benchmark.SIDES)
    self.assertEqual([v.shape.as_list() for v in ours], [v.shape.as_list() for v in model_garden])
    self.assertEqual(sum(v.shape.num_elements() for v in ours), 31_725_248)

    results = {name: end_to_end_benchmark.measure_side(side, settings, strategy) for name, side in sides.items()}
    self.assertCountEqual(results['ours'], end_to_end_benchmark.MEASURES)
    # Model Garden augments in its input pipeline: no on-device augmentation to time.
    self.assertCountEqual(results['model_garden'],
                          set(end_to_end_benchmark.MEASURES) - {end_to_end_benchmark.AUGMENT})
    for side, rates in results.items():
      for measure, (per_second, per_cpu_second) in rates.items():
        for rate in (per_second, per_cpu_second):
          self.assertTrue(math.isfinite(rate) and rate > 0, msg=f'{side} {measure}: {rates}')

    table = end_to_end_benchmark.format_table(settings.clip_shape, results, peak_gib=1.0)
    self.assertIn('| clip 4x32x32 | end to end |', table)
    self.assertIn('| model_garden pairs/CPU-s |', table)
    self.assertRegex(table, r'ours / Model Garden end to end: \d+\.\d\dx \(pairs/s\), \d+\.\d\dx \(pairs/CPU-s\)')

  def test_ours_with_resize_on_the_device(self):
    pattern = end_to_end_benchmark.prepare_data(self.get_temp_dir(), num_videos=2, frames_per_video=12)
    settings = end_to_end_benchmark.Settings(
        file_pattern=pattern, clip_shape=(4, 32, 32, 3), per_replica_batch=1, warmup_steps=0, steps=1,
        input_seconds=0.2, device_resize_canvas=(256, 340))
    strategy = end_to_end_benchmark.get_strategy('', '')
    side = end_to_end_benchmark.build_side(end_to_end_benchmark.OURS, settings, strategy)
    self.assertEqual(side.data.device_resize_canvas, (256, 340))
    rates = end_to_end_benchmark.measure_side(side, settings, strategy)
    self.assertCountEqual(rates, end_to_end_benchmark.MEASURES)
    for measure, (per_second, per_cpu_second) in rates.items():
      self.assertTrue(per_second > 0 and per_cpu_second > 0, msg=f'{measure}: {rates}')

  def test_machine_description(self):
    description = end_to_end_benchmark.machine_description()
    self.assertRegex(description, r'AVX-512 (yes|no|unknown), \d+ CPUs, load average [\d.]+ / [\d.]+ / [\d.]+')


if __name__ == '__main__':
  tf.test.main()
