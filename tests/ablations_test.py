"""The ablation driver (official_cvrl/ablations.py): variants change exactly their field, and a tiny study runs.

The config tests build every variant of every study and compare it with the study's reference (the demo's own
configuration): a variant that silently changed nothing, or changed more than its field, would make a study
meaningless. The smoke test runs one seed of two variants for 2 steps on fake records through the real
subprocesses, then checks the JSON, the plot, that the runs' saved configs carry the variant, and that a second
call reruns nothing.
"""
import json
import os

from absl import flags
from absl.testing import flagsaver
from absl.testing import parameterized
import tensorflow as tf

from official_cvrl import ablations
from official_cvrl import demo
from tests import fake_records

_DATA = ('task.train_data', 'task.validation_data')
_SCHEDULE = ('trainer.train_steps', 'trainer.optimizer_config.warmup.linear.warmup_steps',
             'trainer.optimizer_config.learning_rate.cosine.offset',
             'trainer.optimizer_config.learning_rate.cosine.decay_steps')
_LR = 'trainer.optimizer_config.learning_rate.cosine.initial_learning_rate'

# What each variant must change relative to its study's reference variant (the demo's configuration).
_EXPECTED = {
    ('augmentation', 'TA only'): {f'{d}.spatial_augmentation.enabled': False for d in _DATA},
    ('augmentation', 'SA only'): {f'{d}.temporal_augmentation.enabled': False for d in _DATA},
    ('augmentation', 'TA+SA (per frame)'): {f'{d}.spatial_augmentation.temporally_consistent': False for d in _DATA},
    ('interval_distribution', '-t^0.5+c'): {f'{d}.temporal_augmentation.interval_power': 0.5 for d in _DATA},
    ('interval_distribution', '-t^2+c'): {f'{d}.temporal_augmentation.interval_power': 2.0 for d in _DATA},
    ('interval_distribution', 'uniform'): {
        f'{d}.temporal_augmentation.interval_distribution': 'uniform' for d in _DATA},
    ('interval_distribution', 't+c'): {
        f'{d}.temporal_augmentation.interval_distribution': 'increasing' for d in _DATA},
    ('interval_distribution', 't^2+c'): {
        **{f'{d}.temporal_augmentation.interval_distribution': 'increasing' for d in _DATA},
        **{f'{d}.temporal_augmentation.interval_power': 2.0 for d in _DATA}},
    ('projection_head', '0 hidden'): {'task.model.projection_head.num_hidden_layers': 0},
    ('projection_head', '1 hidden'): {'task.model.projection_head.num_hidden_layers': 1},
    ('projection_head', '3 hidden'): {'task.model.projection_head.num_hidden_layers': 3},
    # Same epochs: steps x 1/scale, warm-up x 1/scale, learning rate x scale (demo: 250 steps, 12 warm-up, 2e-3).
    ('batch_size', 'x0.25 (paper 256)'): {'task.train_data.global_batch_size': 16, _LR: 0.0005,
                                          **dict(zip(_SCHEDULE, (1000, 48, 48, 952)))},
    ('batch_size', 'x0.5 (paper 512)'): {'task.train_data.global_batch_size': 32, _LR: 0.001,
                                         **dict(zip(_SCHEDULE, (500, 24, 24, 476)))},
    ('batch_size', 'x2 (paper 2048)'): {'task.train_data.global_batch_size': 128, _LR: 0.004,
                                        **dict(zip(_SCHEDULE, (125, 6, 6, 119)))},
    # The warm-up keeps its 12 steps at every length, as the paper keeps 5 warm-up epochs.
    ('epochs', '100 ep'): {'trainer.train_steps': 125, _SCHEDULE[3]: 113},
    ('epochs', '500 ep'): {'trainer.train_steps': 625, _SCHEDULE[3]: 613},
    ('epochs', '800 ep'): {'trainer.train_steps': 1000, _SCHEDULE[3]: 988},
    ('num_clips', 'rho=3'): {f'{d}.num_clips': 3 for d in _DATA},
    ('num_clips', 'rho=4'): {f'{d}.num_clips': 4 for d in _DATA},
}
_REFERENCE = {'augmentation': 'TA+SA+TC', 'interval_distribution': '-t+c', 'projection_head': '2 hidden',
              'batch_size': 'x1 (paper 1024)', 'epochs': '200 ep', 'num_clips': 'rho=2'}


def _flat(tree, prefix=''):
  out = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      out.update(_flat(value, f'{prefix}{key}.'))
    else:
      out[prefix + key] = value
  return out


def _variant_config(study, name):
  variant = next(v for v in ablations.STUDIES[study].variants if v.name == name)
  overrides = ablations.pretrain_overrides(variant, 250, ablations.demo_defaults(), '/records')
  return ablations.build_config(ablations.PRETRAIN_EXPERIMENT, overrides)


class VariantConfigTest(tf.test.TestCase, parameterized.TestCase):

  @parameterized.parameters(*sorted(_EXPECTED))
  def test_variant_differs_from_reference_exactly_in_its_field(self, study, name):
    reference = _flat(_variant_config(study, _REFERENCE[study]).as_dict())
    variant = _flat(_variant_config(study, name).as_dict())
    diff = {k: variant[k] for k in variant if variant[k] != reference[k]}
    self.assertEqual(diff.keys(), _EXPECTED[(study, name)].keys())
    for key, value in _EXPECTED[(study, name)].items():
      self.assertAllClose(diff[key], value, msg=key) if isinstance(value, float) else self.assertEqual(
          diff[key], value, msg=key)

  @parameterized.parameters(*sorted(_REFERENCE.items()))
  def test_reference_is_the_demo_at_a_quarter_schedule(self, study, name):
    config = _flat(_variant_config(study, name).as_dict())
    demo_config = _flat(ablations.build_config(ablations.PRETRAIN_EXPERIMENT, []).as_dict())
    diff = {k for k in config if config[k] != demo_config[k]}
    self.assertEqual(diff, set(_SCHEDULE) | {f'{d}.input_path' for d in _DATA})
    self.assertEqual(config['trainer.train_steps'], 250)

  def test_every_variant_is_checked(self):
    every = {(s, v.name) for s, study in ablations.STUDIES.items() for v in study.variants}
    self.assertEqual(every, set(_EXPECTED) | {(s, n) for s, n in _REFERENCE.items()})

  def test_mean_and_sample_standard_deviation(self):
    mean, std = ablations.mean_std([60.0, 62.0, 64.0])
    self.assertAllClose((mean, std), (62.0, 2.0))
    self.assertEqual(ablations.mean_std([5.0]), (5.0, 0.0))

  def test_margins_follow_the_paper_ranking(self):
    variants = [{'name': 'b', 'paper_top1': 50.0, 'mean': 70.0, 'std': 3.0, 'top1': [0.0] * 3},
                {'name': 'a', 'paper_top1': 60.0, 'mean': 74.0, 'std': 4.0, 'top1': [0.0] * 3}]
    (margin,) = ablations.paper_order_margins(variants)
    self.assertEqual((margin['better_in_paper'], margin['worse_in_paper']), ('a', 'b'))
    self.assertAllClose([margin['paper_difference'], margin['our_difference'], margin['standard_error']],
                        [10.0, 4.0, (25 / 3) ** 0.5])
    self.assertAllClose(margin['z'], 4.0 / (25 / 3) ** 0.5)

  def test_margins_follow_an_explicit_order_where_a_paper_number_is_missing(self):
    variants = [{'name': n, 'paper_top1': p, 'mean': m, 'std': 1.0, 'top1': [0.0] * 3}
                for n, p, m in (('rho=2', 66.6, 80.0), ('rho=3', None, 81.0), ('rho=4', 71.0, 79.0))]
    margins = ablations.paper_order_margins(variants, ablations.STUDIES['num_clips'].order)
    self.assertEqual([(m['better_in_paper'], m['worse_in_paper']) for m in margins],
                     [('rho=4', 'rho=3'), ('rho=3', 'rho=2')])
    self.assertEqual([m['paper_difference'] for m in margins], [None, None])
    self.assertAllClose([m['our_difference'] for m in margins], [-2.0, 1.0])
    results = {'study': 'num_clips', 'paper': 'Feichtenhofer et al. 2021', 'paper_setting': 'K400 linear',
               'variants': [dict(v, name=v['name']) for v in variants]}
    self.assertIn('| rho=3 | 81.0 +- 1.0 | 0.0 / 0.0 / 0.0 | - |', ablations.markdown_table(results))
    path = os.path.join(self.get_temp_dir(), 'rho.png')
    ablations.plot(results, path)
    self.assertGreater(os.path.getsize(path), 1000)

  def test_markdown_table_and_plot(self):
    runs = [{'seed': s, 'top1': t, 'contrastive_accuracy': c, 'seconds': 1.0, 'commands': ['x']}
            for s, t, c in ((0, 80.0, 20.0), (1, 84.0, 30.0))]
    results = {'study': 'augmentation', 'paper': 'Table 9',
               'variants': [ablations.summarise('TA only', runs, paper_top1=33.0)],
               'random_init': ablations.summarise('random init', [dict(r, contrastive_accuracy=None) for r in runs])}
    table = ablations.markdown_table(results).splitlines()
    self.assertEqual(table[2], '| TA only | 82.0 +- 2.8 | 80.0 / 84.0 | 33.0 | 25.0 +- 7.1 |')
    self.assertEqual(table[3], '| random init | 82.0 +- 2.8 | 80.0 / 84.0 | - | - |')
    path = os.path.join(self.get_temp_dir(), 'plot.png')
    ablations.plot(results, path)
    self.assertGreater(os.path.getsize(path), 1000)


def _tiny(shape_keys, batch_keys):
  return [f'{k}.feature_shape=[4,32,32,3]' for k in shape_keys] + [
      f'{k}.global_batch_size=2' for k in batch_keys] + ['task.train_data.shuffle_buffer_size=4',
                                                        'trainer.steps_per_loop=2', 'trainer.summary_interval=2',
                                                        'trainer.checkpoint_interval=2',
                                                        'trainer.validation_interval=2']


class AblationSmokeTest(tf.test.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    if not flags.FLAGS.is_parsed():
      flags.FLAGS.mark_as_parsed()

  def test_two_variants_one_seed_then_resume(self):
    records = os.path.join(self.get_temp_dir(), 'records')
    os.makedirs(records)
    for split, count in (('train', 6), ('val', 4), ('test', 4)):
      fake_records.write_records(os.path.join(records, f'{split}-00000-of-00001.tfrecord'), count,
                                 seed=len(split))
    output_dir = os.path.join(self.get_temp_dir(), 'out')
    pretrain = _tiny(_DATA, _DATA) + ['task.model.projection_head.hidden_dim=32',
                                      'task.model.projection_head.output_dim=8', 'trainer.validation_steps=1']
    probe = _tiny(_DATA, _DATA) + ['trainer.train_steps=2', 'trainer.validation_steps=2',
                                   'trainer.optimizer_config.learning_rate.cosine.decay_steps=2']
    settings = dict(study='augmentation', seeds=['0'], variants=['TA+SA (per frame)', 'TA+SA+TC'],
                    output_dir=output_dir, records_dir=records, base_steps=2, pretrain_overrides=pretrain,
                    probe_overrides=probe, random_baseline=False)
    with flagsaver.flagsaver(**settings):
      ablations.main(['ablations'])

    with open(os.path.join(output_dir, 'augmentation.json')) as f:
      results = json.load(f)
    self.assertEqual(results['study'], 'augmentation')
    self.assertEqual([v['name'] for v in results['variants']], ['TA+SA (per frame)', 'TA+SA+TC'])
    for variant in results['variants']:
      self.assertEqual(variant['seeds'], [0])
      self.assertLen(variant['top1'], 1)
      self.assertBetween(variant['top1'][0], 0.0, 100.0)
      self.assertAllClose(variant['mean'], variant['top1'][0])
      self.assertEqual(variant['std'], 0.0)
      self.assertLen(variant['contrastive_accuracy'], 1)
      self.assertIn('official_cvrl.train', variant['commands'][0][0])
      self.assertIn('cvrl_linear_eval_demo', variant['commands'][0][1])
    self.assertGreater(os.path.getsize(os.path.join(output_dir, 'augmentation.png')), 0)

    # The variant reached the run: the pretraining run's own saved config carries it.
    consistent = []
    for variant in results['variants']:
      params = os.path.join(output_dir, variant['run_dirs'][0], 'pretrain', 'params.yaml')
      with open(params) as f:
        consistent.append('temporally_consistent: false' not in f.read())
    self.assertEqual(consistent, [False, True])

    # A second call finds every run finished and launches nothing.
    with flagsaver.flagsaver(**settings), \
        tf.compat.v1.test.mock.patch.object(demo, 'run_stage', side_effect=AssertionError('rerun')):
      ablations.main(['ablations'])
    with open(os.path.join(output_dir, 'augmentation.json')) as f:
      self.assertEqual([v['top1'] for v in json.load(f)['variants']], [v['top1'] for v in results['variants']])


if __name__ == '__main__':
  tf.test.main()
