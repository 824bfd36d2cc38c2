"""Strict restore of a pretrained backbone: every variable present with its shape, or an error listing the culprits.

`tf.train.Checkpoint.read` silently skips what it cannot match (Model Garden's video_ssl linear evaluation then
evaluates a partly random network without a word). Here the checkpoint's object graph is walked side by side with
the model's, from the `backbone` object at the checkpoint root (Model Garden trainers write it there because the
CVRL models declare `checkpoint_items = {'backbone': ...}`), and the restore happens only when

- every variable of the model's backbone has a value in the checkpoint (otherwise: "missing"),
- with the same shape ("mis-shaped"),
- and the checkpoint's backbone holds no variable the model lacks ("unexpected": a different architecture).

Otherwise a `UserInputError` lists the variables (checkpoint key, model variable name, shapes) and says which
config key to fix. Both models' backbones are compared by object path (e.g.
`backbone/layer_with_weights-3/moving_mean`), so a checkpoint written by `CVRLModel` (pretraining) restores into
`VideoClassifier` (evaluation) and vice versa.

Two checkpoint layouts are recognised (`checkpoint_layout`): a trainer's (root: `model`, `optimizer`,
`global_step`, `backbone`) and a backbone-only one (root: `backbone`, `save_counter`), which is how the authors'
released CVRL checkpoints (`<name>/<name>_backbone-1`, a Model Garden `resnet_3d` in the CVRL configuration) are
laid out. Keras numbers functional layers by position, and our `r3d` R3D-50 has Model Garden's layers in Model
Garden's order, so the released backbones restore into it unchanged. Batch norm epsilon is not a variable: the
log line of every restore states the momentum and epsilon the backbone runs with, and a backbone-only checkpoint
restored with an epsilon other than the release's 1e-5 gets a warning.
"""
import dataclasses
import os
from typing import Dict, List, Optional, Set, Tuple

from absl import logging
import tensorflow as tf
import tf_keras

from tensorflow.core.protobuf import trackable_object_graph_pb2
from official_cvrl.utils import errors

BACKBONE_KEY = 'backbone'
# Root objects of a backbone-only checkpoint, `tf.train.Checkpoint(backbone=...).save(prefix)`: the released layout.
_BACKBONE_ONLY_ROOT = frozenset({BACKBONE_KEY, 'save_counter'})
LAYOUT_BACKBONE_ONLY = 'a backbone-only checkpoint (the layout of the released CVRL checkpoints)'
LAYOUT_TRAINER = 'a training run\'s checkpoint'
# Batch norm epsilon of the released CVRL checkpoints (and of `configs.backbones.cvrl_norm_activation`).
RELEASED_NORM_EPSILON = 1e-5
_OBJECT_GRAPH_KEY = '_CHECKPOINTABLE_OBJECT_GRAPH'
_VARIABLE_VALUE = 'VARIABLE_VALUE'
_MAX_LISTED = 20


@dataclasses.dataclass
class VariableMismatch:
  """Differences between a model's backbone and a checkpoint's.

  Attributes:
    missing: (object path, model variable name, model shape) of backbone variables the checkpoint lacks.
    mis_shaped: (object path, model variable name, model shape, checkpoint shape).
    unexpected: (object path, checkpoint shape) of checkpoint backbone variables the model lacks.
    num_matched: model variables with a checkpoint value of the right shape.
  """
  missing: List[Tuple[str, str, List[int]]] = dataclasses.field(default_factory=list)
  mis_shaped: List[Tuple[str, str, List[int], List[int]]] = dataclasses.field(default_factory=list)
  unexpected: List[Tuple[str, List[int]]] = dataclasses.field(default_factory=list)
  num_matched: int = 0

  @property
  def ok(self) -> bool:
    return not (self.missing or self.mis_shaped or self.unexpected)

  def describe(self) -> str:
    """A multi-line listing of every difference (at most 20 per kind, then a count)."""
    lines = []

    def section(title, items, fmt):
      if not items:
        return
      lines.append(f'{title} ({len(items)}):')
      lines.extend('  ' + fmt(item) for item in items[:_MAX_LISTED])
      if len(items) > _MAX_LISTED:
        lines.append(f'  ... and {len(items) - _MAX_LISTED} more')

    section('missing from the checkpoint', self.missing,
            lambda m: f'{m[0]} (model variable {m[1]}, shape {m[2]})')
    section('shape differs', self.mis_shaped,
            lambda m: f'{m[0]} (model variable {m[1]}): model {m[2]}, checkpoint {m[3]}')
    section('in the checkpoint but not in the model', self.unexpected,
            lambda m: f'{m[0]} (shape {m[1]})')
    return '\n'.join(lines)


def resolve_checkpoint(ckpt_dir_or_file: str, key: str = 'task.init_checkpoint') -> str:
  """The checkpoint path of a model_dir (its latest checkpoint), of a checkpoint prefix, or of a release's folder.

  Args:
    ckpt_dir_or_file: a training run's model_dir, a checkpoint prefix such as `.../ckpt-1000`, or a folder with
      one checkpoint and no "checkpoint" file (an extracted release, e.g. `r3d_1x_k400_800ep/`).
    key: the config key the value came from, named in errors.

  Returns:
    The checkpoint prefix.

  Raises:
    UserInputError: when no checkpoint is found.
  """
  hint = (f'Set {key} to the model_dir of a pretraining run (e.g. the --model_dir of cvrl_pretrain_*), to a '
          'checkpoint prefix such as <model_dir>/ckpt-1000 or a released <name>/<name>_backbone-1, or to \'\' '
          'for a randomly initialised backbone.')
  if tf.io.gfile.isdir(ckpt_dir_or_file):
    latest = tf.train.latest_checkpoint(ckpt_dir_or_file)
    if latest is not None:
      return latest
    # An extracted release (`tar -xzf r3d_1x_k400_800ep.tar.gz`) may hold the files without a "checkpoint" file.
    prefixes = sorted(name[:-len('.index')] for name in tf.io.gfile.listdir(ckpt_dir_or_file)
                      if name.endswith('.index'))
    if len(prefixes) == 1:
      return os.path.join(ckpt_dir_or_file, prefixes[0])
    if prefixes:
      raise errors.UserInputError(f'{key}={ckpt_dir_or_file!r} holds several checkpoints and no "checkpoint" file '
                                  f'naming the latest: {prefixes}. Set {key} to one prefix, e.g. '
                                  f'{os.path.join(ckpt_dir_or_file, prefixes[-1])}.')
    raise errors.UserInputError(f'{key}={ckpt_dir_or_file!r} is a folder without a checkpoint (no "checkpoint" '
                                f'file naming a ckpt-N, no *.index file). {hint}')
  if not tf.io.gfile.exists(ckpt_dir_or_file + '.index'):
    raise errors.UserInputError(f'{key}={ckpt_dir_or_file!r}: no such folder or checkpoint ({ckpt_dir_or_file}.index '
                                f'does not exist). {hint}')
  return ckpt_dir_or_file


def _object_graph(reader) -> trackable_object_graph_pb2.TrackableObjectGraph:
  graph = trackable_object_graph_pb2.TrackableObjectGraph()
  graph.ParseFromString(reader.get_tensor(_OBJECT_GRAPH_KEY))
  return graph


def _children(graph, node_id: int) -> Dict[str, int]:
  return {child.local_name: child.node_id for child in graph.nodes[node_id].children}


def _variable_key(graph, node_id: int) -> Optional[str]:
  for attribute in graph.nodes[node_id].attributes:
    if attribute.name == _VARIABLE_VALUE:
      return attribute.checkpoint_key
  return None


def _checkpoint_variables(graph, node_id: int) -> Dict[str, str]:
  """checkpoint key -> object path (below the backbone) of every variable in the subtree of `node_id`."""
  found, queue, seen = {}, [(node_id, '')], {node_id}
  while queue:
    current, path = queue.pop(0)
    key = _variable_key(graph, current)
    if key is not None:
      found.setdefault(key, path)
    for name, child in _children(graph, current).items():
      if child not in seen:
        seen.add(child)
        queue.append((child, f'{path}/{name}' if path else name))
  return found


def _model_variables(graph, node_id: Optional[int], root) -> Dict[int, Tuple[tf.Variable, str, Optional[str]]]:
  """id(variable) -> (variable, object path, checkpoint key or None), walking the model and checkpoint together.

  A variable reachable along several paths counts as found if any of them exists in the checkpoint.
  """
  result = {}
  queue, seen = [(root, node_id, '')], set()
  while queue:
    obj, node, path = queue.pop(0)
    if (id(obj), node) in seen:
      continue
    seen.add((id(obj), node))
    if isinstance(obj, tf.Variable):
      key = _variable_key(graph, node) if node is not None else None
      previous = result.get(id(obj))
      if previous is None or (previous[2] is None and key is not None):
        result[id(obj)] = (obj, path, key)
      continue
    checkpoint_children = _children(graph, node) if node is not None else {}
    for name, child in tf.train.TrackableView.children(obj).items():
      queue.append((child, checkpoint_children.get(name), f'{path}/{name}' if path else name))
  return result


def _read(checkpoint_path: str, key: str):
  """(reader, object graph) of an object-based checkpoint, or a UserInputError saying why not."""
  try:
    reader = tf.train.load_checkpoint(checkpoint_path)
  except (tf.errors.OpError, ValueError) as e:
    raise errors.UserInputError(f'{key}={checkpoint_path!r} is not a readable TensorFlow checkpoint ({e}).') from None
  if not reader.has_tensor(_OBJECT_GRAPH_KEY):
    raise errors.UserInputError(
        f'{key}={checkpoint_path!r} is a name-based (TF1 Saver) checkpoint; only object-based TF2 checkpoints '
        'written by a Model Garden trainer (official_cvrl.train) or released as `<name>_backbone-1` can be restored.')
  return reader, _object_graph(reader)


def checkpoint_layout(checkpoint_path: str, key: str = 'task.init_checkpoint') -> str:
  """`LAYOUT_BACKBONE_ONLY` when the checkpoint's root holds only the backbone, else `LAYOUT_TRAINER`.

  Args:
    checkpoint_path: a checkpoint prefix (see `resolve_checkpoint`).
    key: the config key named in errors.

  Raises:
    UserInputError: when the checkpoint is unreadable or not object-based.
  """
  _, graph = _read(checkpoint_path, key)
  root = set(_children(graph, 0))
  return LAYOUT_BACKBONE_ONLY if BACKBONE_KEY in root and root <= _BACKBONE_ONLY_ROOT else LAYOUT_TRAINER


def is_backbone_only(ckpt_dir_or_file: str, key: str = 'task.init_checkpoint') -> bool:
  """Whether `ckpt_dir_or_file` resolves to a readable backbone-only checkpoint (e.g. a released one).

  False for a trainer's checkpoint and for paths that do not resolve or read, whose errors the caller's own
  restore reports.
  """
  try:
    return checkpoint_layout(resolve_checkpoint(ckpt_dir_or_file, key), key) == LAYOUT_BACKBONE_ONLY
  except errors.UserInputError:
    return False


def batch_norm_settings(model: tf_keras.Model) -> Set[Tuple[float, float]]:
  """The distinct (momentum, epsilon) of the batch norm layers inside `model`."""
  return {(float(layer.momentum), float(layer.epsilon)) for layer in model.submodules
          if isinstance(layer, tf_keras.layers.BatchNormalization)}


def compare_backbone(backbone: tf_keras.Model, checkpoint_path: str,
                     key: str = 'task.init_checkpoint') -> VariableMismatch:
  """Compares the backbone variables of a model with those under `backbone` in a checkpoint.

  Args:
    backbone: the model's backbone, with its variables created.
    checkpoint_path: a checkpoint prefix (see `resolve_checkpoint`).
    key: the config key named in errors.

  Returns:
    The differences (empty lists when the checkpoint matches).

  Raises:
    UserInputError: when the checkpoint is unreadable, is not object-based, or has no `backbone` at its root.
  """
  reader, graph = _read(checkpoint_path, key)
  root_children = _children(graph, 0)
  if BACKBONE_KEY not in root_children:
    raise errors.UserInputError(
        f'{key}={checkpoint_path!r} has no "{BACKBONE_KEY}" object at its root (it has: {sorted(root_children)}). '
        'Use a checkpoint written by official_cvrl.train (or any Model Garden trainer whose model declares '
        'checkpoint_items = {"backbone": ...}).')
  node = root_children[BACKBONE_KEY]
  shapes = reader.get_variable_to_shape_map()
  checkpoint_vars = _checkpoint_variables(graph, node)
  mismatch = VariableMismatch()
  matched_keys = set()
  for variable, path, ckpt_key in _model_variables(graph, node, backbone).values():
    full_path = f'{BACKBONE_KEY}/{path}'
    model_shape = variable.shape.as_list()
    if ckpt_key is None or ckpt_key not in shapes:
      mismatch.missing.append((full_path, variable.name, model_shape))
      continue
    matched_keys.add(ckpt_key)
    if list(shapes[ckpt_key]) != model_shape:
      mismatch.mis_shaped.append((full_path, variable.name, model_shape, list(shapes[ckpt_key])))
    else:
      mismatch.num_matched += 1
  for ckpt_key, path in sorted(checkpoint_vars.items(), key=lambda item: item[1]):
    if ckpt_key not in matched_keys:
      mismatch.unexpected.append((f'{BACKBONE_KEY}/{path}', list(shapes.get(ckpt_key, []))))
  mismatch.missing.sort()
  mismatch.mis_shaped.sort()
  return mismatch


def restore_backbone(backbone: tf_keras.Model, ckpt_dir_or_file: str, key: str = 'task.init_checkpoint') -> str:
  """Restores every backbone variable from a checkpoint, or raises listing what does not match.

  Args:
    backbone: the model's backbone, with its variables created (build the model first).
    ckpt_dir_or_file: a training run's model_dir (latest checkpoint), a checkpoint prefix, or a released
      backbone's prefix or extracted folder.
    key: the config key the path came from, named in errors.

  Returns:
    The checkpoint prefix restored from.

  Raises:
    UserInputError: no checkpoint, no backbone in it, or any missing / mis-shaped / unexpected variable.
  """
  checkpoint_path = resolve_checkpoint(ckpt_dir_or_file, key)
  if not backbone.variables:
    raise ValueError('restore_backbone needs a built backbone: call the model once (or build it) first.')
  mismatch = compare_backbone(backbone, checkpoint_path, key)
  if not mismatch.ok:
    raise errors.UserInputError(
        f'{key}={ckpt_dir_or_file!r}: the checkpoint {checkpoint_path} does not match the model\'s backbone '
        f'({mismatch.num_matched} variables match):\n{mismatch.describe()}\n'
        'The backbone config (task.model.backbone, e.g. r3d.model_id / width_multiplier / stem settings) must be '
        'the one the checkpoint was trained with: copy it from the params.yaml of the pretraining run, or point '
        f'{key} at a checkpoint of this architecture. The released CVRL checkpoints need the registered defaults '
        '(task.model.backbone.type=r3d, r3d.model_id=50, width_multiplier=1, stem_conv_temporal_kernel_size=5, '
        'stem_conv_temporal_stride=2).')
  status = tf.train.Checkpoint(**{BACKBONE_KEY: backbone}).read(checkpoint_path)
  status.expect_partial().assert_existing_objects_matched()
  _log_restore(backbone, checkpoint_path, mismatch.num_matched, checkpoint_layout(checkpoint_path, key))
  return checkpoint_path


def _log_restore(backbone: tf_keras.Model, checkpoint_path: str, num_variables: int, layout: str) -> None:
  """Says what was restored and with which batch norm settings; warns when they differ from the release's."""
  settings = sorted(batch_norm_settings(backbone))
  described = ', '.join(f'momentum {m:g} / epsilon {e:g}' for m, e in settings) or 'none'
  logging.info('Restored all %d backbone variables from %s, %s; the backbone\'s batch norm: %s '
               '(task.model.norm_activation).', num_variables, checkpoint_path, layout, described)
  if layout == LAYOUT_BACKBONE_ONLY and any(abs(e - RELEASED_NORM_EPSILON) > 1e-12 for _, e in settings):
    logging.warning(
        'Batch norm epsilon %s differs from the %g the released CVRL checkpoints were trained with: their features '
        'will be off. Set task.model.norm_activation.norm_epsilon=%g unless %s was trained otherwise.',
        described, RELEASED_NORM_EPSILON, RELEASED_NORM_EPSILON, checkpoint_path)
