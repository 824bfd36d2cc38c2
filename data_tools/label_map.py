"""A label map file shared by every split of a dataset, so class indices agree across separate runs.

Converters that assign indices per run (e.g. `list(set(labels))`) can give train and validation different indices
for the same class. Here the map is written once, as a text file with one class name per line (line i is class
index i), and every later conversion reads it back instead of recomputing it. New maps are sorted by class name
(plain code-point order) unless the dataset defines an official order (UCF-101's classInd.txt). A label missing
from an existing map is refused with `UnknownLabelError`, which the converter reports as `unknown label`.
"""

import collections
import contextlib
import os
from typing import Iterable, Iterator, List, Optional, Sequence

import tensorflow as tf

from data_tools import report
from official_cvrl.utils import errors


class UnknownLabelError(report.ConversionError):
  reason = report.UNKNOWN_LABEL


@contextlib.contextmanager
def _storage_errors(path: str, action: str) -> Iterator[None]:
  """Turns a file-system failure (an unreachable or unauthorised `gs://` bucket, a permission error) into one
  `UserInputError` line naming the label map, instead of a TensorFlow stack trace from deep inside gfile."""
  try:
    yield
  except tf.errors.OpError as e:
    detail = ' '.join(str(e.message).split())
    remote = '://' in path
    hint = ('check the bucket name, your network and credentials (gcloud auth application-default login), or pass a '
            'local --label_map' if remote else 'check the path and its permissions')
    raise errors.UserInputError(f'Label map {path}: cannot {action} it ({detail}); {hint}.') from None


class LabelMap:
  """An ordered list of class names; the position of a name is its class index."""

  def __init__(self, names: Sequence[str], path: str = ''):
    names = list(names)
    for name in names:
      if not name or name != name.strip() or '\n' in name:
        raise ValueError(f'Label map {path or "(new)"}: class name {name!r} is empty or has surrounding '
                         'whitespace; fix the class name.')
    duplicates = sorted(n for n, count in collections.Counter(names).items() if count > 1)
    if duplicates:
      raise ValueError(f'Label map {path or "(new)"} lists classes twice: {duplicates}. Remove the duplicates.')
    self.names = names
    self.path = path
    self._index = {name: i for i, name in enumerate(names)}

  def __len__(self) -> int:
    return len(self.names)

  def __contains__(self, name: str) -> bool:
    return name in self._index

  def index(self, name: str) -> int:
    """Returns the class index of `name`.

    Raises:
      UnknownLabelError: when `name` is not in the map.
    """
    try:
      return self._index[name]
    except KeyError:
      where = f'the label map {self.path}' if self.path else 'the label map'
      raise UnknownLabelError(
          f'label {name!r} is not in {where} ({len(self.names)} classes). If the map was made from another '
          'split or dataset, convert with a map that lists this class (or a fresh --label_map path).') from None

  def to_text(self) -> str:
    return ''.join(name + '\n' for name in self.names)


def sorted_names(names: Iterable[str]) -> List[str]:
  """The deterministic order of a new map: unique names in code-point order."""
  return sorted(set(names))


def exists(path: str) -> bool:
  """Whether the label map file exists; an unreachable location raises one `UserInputError` line."""
  with _storage_errors(path, 'read'):
    return tf.io.gfile.exists(path)


def read(path: str) -> LabelMap:
  """Reads a label map file (one class name per line; blank lines are not allowed).

  Raises:
    FileNotFoundError: when `path` does not exist.
    ValueError: when the file is empty or malformed, or cannot be read (`errors.UserInputError`: e.g. an
      unreachable bucket).
  """
  with _storage_errors(path, 'read'):
    if not tf.io.gfile.exists(path):
      raise FileNotFoundError(f'Label map {path} does not exist.')
    with tf.io.gfile.GFile(path, 'r') as f:
      lines = f.read().splitlines()
  if not lines:
    raise ValueError(f'Label map {path} is empty; delete it to have it recreated, or list one class per line.')
  if any(not line.strip() for line in lines):
    raise ValueError(f'Label map {path} has blank lines; each line must be one class name (line i = index i).')
  return LabelMap([line.strip() for line in lines], path=path)


def write(path: str, label_map: LabelMap) -> None:
  """Writes the map atomically (temporary file, then rename) so a reader never sees half a map."""
  directory = os.path.dirname(path)
  with _storage_errors(path, 'write'):
    if directory:
      tf.io.gfile.makedirs(directory)
    temporary = f'{path}.tmp-{os.getpid()}'
    with tf.io.gfile.GFile(temporary, 'w') as f:
      f.write(label_map.to_text())
    tf.io.gfile.rename(temporary, path, overwrite=True)


def load_or_create(path: str, class_names: Optional[Sequence[str]], sort: bool = True) -> LabelMap:
  """Reads the map at `path`, or creates it there from `class_names` when it does not exist yet.

  Args:
    path: label map file shared by all splits of a dataset.
    class_names: every class of the dataset, used only when the file does not exist yet.
    sort: whether to sort a new map by name; False keeps `class_names`' order (an official order such as
      UCF-101's classInd.txt).

  Returns:
    The label map; `path` exists afterwards.

  Raises:
    ValueError: when the map does not exist and no class names are known, or cannot be read or written
      (`errors.UserInputError`).
  """
  if exists(path):
    return read(path)
  if not class_names:
    raise ValueError(f'Label map {path} does not exist and the inputs name no classes to create it from.')
  names = sorted_names(class_names) if sort else list(class_names)
  label_map = LabelMap(names, path=path)
  write(path, label_map)
  return label_map
