r"""The manual is tested: every shell command in README.md and docs/*.md runs, or is marked with why it cannot.

Which text is a command
  * Fenced code blocks labelled ```bash, ```sh, ```shell or ```console hold commands. In a fenced block with another
    label, a line starting with `$ ` is a command (without the `$ `). An unlabelled block is a layout or an output
    sample; one with a line that looks like a command (`python -m`, `make`, `gsutil`, ...) fails the test: label it.
  * In a shell block, `#` comment lines are dropped, lines ending in `\` are joined, and a compound statement
    (`for ...; do ... done`, `if ... fi`) is one command. Inline `code` in prose is not a command.

Which commands run
  * A block preceded by `<!-- not-run: <reason> -->` (the last non-blank line before its opening fence) is not run;
    the reason is required (needs a TPU, needs Kinetics, a cluster, a timed measurement, ...).
  * Every other block must be selected by exactly one step of `CHAINS` below, which runs the whole block with bash
    (`set -e`), in order, in one scratch folder: a fresh copy of the layout a user has after cloning (symlinks to the
    packages and `experiments/`), plus tiny stand-ins for the raw datasets (`_make_raw_datasets`). The commands run
    as written except for the edits of `SUBSTITUTIONS` (sizes and scratch paths only), so a flag that stops
    working, or a folder one command writes and the next does not read, fails here. A `python -m` command already
    run verbatim earlier (the README repeats commands of docs/serving.md) is not run twice.
  * The test fails when a runnable block is selected by no step (a new command: add it to a chain, or mark it), when
    a step selects no block (the docs changed: update the step), or when a selected block fails.

Which paths must agree (`test_docs_write_what_experiments_and_commands_read`, no command runs)
  Dataset folders written by the docs' conversion commands (`data_tools.convert` for Kinetics / UCF-101 / HMDB-51 and
  the demo, `make_subset`, `ava`, `synthetic_detection`) must be read by a registered experiment's default
  `input_path` or by a documented command; what documented commands read (input paths, checkpoints, exports,
  embeddings) must be written by a documented command. Roots are compared loosely (`gs://YOUR_BUCKET/` = `data/`),
  folder names exactly, so `data/k400_train_1pct` against `<root>/kinetics400_train_{label_percent}pct/` fails.
  Paths that hold a shell variable (`$R/...`) are not checked.

Time: the chains run side by side. The whole file takes about 6 CPU-minutes (19 blocks, ~40 processes; measured
2026-11-30), most of it TensorFlow start-up in each process and graph building of the five few-step training runs:
about 3-4 minutes of wall time on the idle 2-core development machine, much longer when other jobs load it (13-17
minutes at a load average of 10). The block timings are printed (`pytest -s`).
"""

import collections
import concurrent.futures
import dataclasses
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Dict, Iterable, List, Optional, Sequence, Set, Tuple

from absl.testing import absltest

_REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_SHELL_LABELS = ('bash', 'sh', 'shell', 'console')
_FENCE = re.compile(r'^(\s*)(```+)\s*([\w+-]*)\s*$')
_NOT_RUN = re.compile(r'^\s*<!--\s*not-run:\s*(.*?)\s*-->\s*$')
_LOOKS_LIKE_A_COMMAND = re.compile(r'^\s*(\$ |python3? -m |python3? -c |make |gsutil |docker |saved_model_cli |'
                                   r'tensorflow_model_server )')


# ----------------------------------------------------------------------------------------------------------------
# Extraction.


@dataclasses.dataclass
class Block:
  """One fenced shell block of a doc.

  Attributes:
    doc: path relative to the repository root.
    line: 1-based line of the opening fence.
    commands: the block's commands (continuations joined, comments dropped; compound statements whole).
    not_run: the reason of a `not-run` marker, or None.
  """
  doc: str
  line: int
  commands: List[str]
  not_run: Optional[str]

  @property
  def where(self) -> str:
    return f'{self.doc}:{self.line}'

  @property
  def text(self) -> str:
    return '\n'.join(self.commands)


def doc_paths() -> List[str]:
  """README.md and every docs/*.md, relative to the repository root."""
  docs = sorted(os.path.relpath(p, _REPO_ROOT) for p in glob.glob(os.path.join(_REPO_ROOT, 'docs', '*.md')))
  return ['README.md'] + docs


def _strip_quoted(line: str) -> str:
  return re.sub(r"'[^']*'|\"[^\"]*\"", "''", line)


def split_commands(lines: Sequence[str]) -> List[str]:
  """Shell lines -> commands: comments dropped, `\\` continuations joined, compound statements kept whole."""
  logical, pending = [], ''
  for line in lines:
    stripped = line.strip()
    if not pending and (not stripped or stripped.startswith('#')):
      continue
    if stripped.endswith('\\'):
      pending += stripped[:-1].rstrip() + ' '
      continue
    logical.append(pending + stripped)
    pending = ''
  if pending:
    logical.append(pending.strip())
  commands, current, depth = [], [], 0
  for line in logical:
    bare = _strip_quoted(line.split(' #')[0])
    depth += len(re.findall(r'\b(do|then)\b', bare)) - len(re.findall(r'\b(done|fi)\b', bare))
    current.append(line)
    if depth <= 0:
      commands.append('\n'.join(current))
      current, depth = [], 0
  if current:
    commands.append('\n'.join(current))
  return commands


def parse_doc(doc: str) -> Tuple[List[Block], List[str]]:
  """The shell blocks of `doc` (relative to the repository root) and the problems found."""
  with open(os.path.join(_REPO_ROOT, doc)) as f:
    return parse_markdown(doc, f.read())


def parse_markdown(doc: str, text: str) -> Tuple[List[Block], List[str]]:
  """The shell blocks of a Markdown text and the problems found (unlabelled command blocks, empty reasons, open
  fences); `doc` names it in messages."""
  lines = text.split('\n')
  blocks, problems = [], []
  i = 0
  while i < len(lines):
    fence = _FENCE.match(lines[i])
    if not fence:
      i += 1
      continue
    end = i + 1
    while end < len(lines) and not lines[end].strip().startswith(fence.group(2)):
      end += 1
    if end == len(lines):
      problems.append(f'{doc}:{i + 1}: code block never closed.')
      break
    body, label = lines[i + 1:end], fence.group(3).lower()
    previous = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), '')
    marker = _NOT_RUN.match(previous)
    if marker and not marker.group(1):
      problems.append(f'{doc}:{i + 1}: the not-run marker gives no reason: <!-- not-run: <why> -->.')
    if label in _SHELL_LABELS and label != 'console':
      commands = split_commands(body)
    else:  # A console transcript or another language: only `$ ` lines are commands.
      commands = [l.lstrip()[2:] for l in body if l.lstrip().startswith('$ ')]
      if not label and not commands and any(_LOOKS_LIKE_A_COMMAND.match(l) for l in body):
        problems.append(f'{doc}:{i + 1}: an unlabelled code block holds commands: label it ```bash (then run or '
                        'mark it).')
    if commands:
      blocks.append(Block(doc, i + 1, commands, marker.group(1) if marker else None))
    i = end + 1
  return blocks, problems


def all_blocks() -> Tuple[List[Block], List[str]]:
  blocks, problems = [], []
  for doc in doc_paths():
    found, issues = parse_doc(doc)
    blocks += found
    problems += issues
  return blocks, problems


# ----------------------------------------------------------------------------------------------------------------
# What runs, and how.

# Every edit the test makes to a documented command before running it: (pattern, replacement, why). `{work}` is
# the scratch folder. Nothing else is changed: same tools, same flags, same folders.
SUBSTITUTIONS = (
    (r'/tmp/', '{work}/tmp/', 'scratch files of the docs go into the test folder'),
    (r'gs://YOUR_BUCKET\b', 'data', 'the bucket is the data/ folder the README conversion commands write locally'),
    (r'(python -m data_tools\.synthetic\.demo_dataset\b[^\n]*)', r'\1 --num_train=16 --num_val=8 --num_test=8',
     'the demo dataset is 2000/400/1000 videos; 16/8/8 exercise the same code'),
    (r'(python -m official_cvrl\.train\b[^\n]*)', r'\1 --config_file={work}/smoke.yaml',
     'a few steps of batch 4 instead of hundreds of batch 64 (SMOKE_CONFIG)'),
    (r'(python -m data_tools\.synthetic\.synthetic_detection --output_dir[^\n]*)', r'\1 --num_train=8 --num_val=8',
     '128 / 512 detection keyframes -> 8 / 8'),
)

# Appended by the official_cvrl.train substitution (a later --config_file overrides earlier ones; --params_override
# still wins): 2 training steps and one evaluation batch.
SMOKE_CONFIG = """\
trainer:
  train_steps: 2
  validation_steps: 1
  validation_interval: 2
  steps_per_loop: 1
  summary_interval: 1
  checkpoint_interval: 2
task:
  train_data:
    global_batch_size: 4
  validation_data:
    global_batch_size: 4
"""


def substitute(command: str, work: str) -> str:
  for pattern, replacement, _ in SUBSTITUTIONS:
    command = re.sub(pattern, replacement.replace('{work}', work), command)
  return command


# A step selects every block whose text (whitespace-normalised) contains it; a block runs once, whole. FIRST makes
# the demo data and the pretrained demo model every later step starts from; then the chains run side by side (their
# processes are mostly single-threaded start-up, so three share two CPUs well).
FIRST = (
    'python -m data_tools.synthetic.demo_dataset --output_dir=demo_output/raw_videos',  # data_preparation.md
    'python -m official_cvrl.train --experiment=cvrl_pretrain_demo --mode=train_and_eval',  # README
)
CHAINS = {
    'evaluate, export, serve': (
        '--model_dir=demo_output/linear_eval_unstandardized',  # evaluation.md
        '--export_dir=demo_output/saved_model',  # README, serving.md
        'saved_model_cli show --dir $VERSION_DIR --all',  # serving.md
        '--input_format=class_folders --output=demo_output/embeddings/test.npz --num_clips=4',  # README, serving.md
        '--input=my_videos/ --output=my_embeddings.npz',  # serving.md: the three kinds of input
        '--database=demo_output/embeddings/train.npz --k=5',  # serving.md: retrieval
    ),
    'detection': (
        # docs/action_detection.md
        'python -m data_tools.synthetic.synthetic_detection --output_dir demo_output/detection_tfrecords',
    ),
    'datasets, then detection': (
        'python -m data_tools.convert --source=kinetics --split=train',  # README
        'python -m data_tools.convert --source kinetics --annotations kinetics400/annotations/train.csv',
        'python -c "import json,sys;',  # data_preparation.md: the failures of a report
        "python -m data_tools.make_subset --input 'data/kinetics400/train-*.tfrecord' --fraction 0.01",
        "python -m data_tools.make_subset --input 'gs://YOUR_BUCKET/kinetics400/train-*' --fraction 0.01",
        '--source ucf101 --input_dir UCF-101',
        '--source hmdb51 --input_dir hmdb51',
        '--source folder --input_dir my_videos/train',
        '--source list --input_list my_footage.txt',
        "python -m data_tools.verify --input 'demo_output/tfrecords/train-*.tfrecord'",
    ),
}


def _normalise(text: str) -> str:
  return ' '.join(text.replace('\\\n', ' ').split())


def select(blocks: Sequence[Block], step: str) -> List[Block]:
  """The blocks whose normalised text contains `step`."""
  wanted = _normalise(step)
  return [b for b in blocks if wanted in _normalise(b.text)]


# ----------------------------------------------------------------------------------------------------------------
# The scratch folder: what a user has after cloning, and tiny raw datasets in the official layouts.

_LINKED = ('data_tools', 'official_cvrl', 'benchmarks', 'experiments', 'setup.py', 'requirements.txt')


def _video(path: str, frames: int = 8, codec: str = 'libx264') -> None:
  from tests.data_tools import video_fixtures  # pylint: disable=g-import-not-at-top  (imports PyAV)
  video_fixtures.write_video(path, num_frames=frames, fps=8, codec=codec)


def _write(path: str, text: str) -> None:
  os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
  with open(path, 'w', newline='') as f:
    f.write(text)


def _make_raw_datasets(work: str) -> None:
  """Two-class stand-ins for the raw datasets the docs convert, in their official layouts."""
  # Kinetics: annotation CSVs (quoted labels) and already cut clips <youtube_id>_<start:06d>_<end:06d>.mp4.
  for split, count in (('train', 4), ('val', 2)):
    rows = ['label,youtube_id,time_start,time_end,split']
    for i in range(count):
      youtube_id = f'{split[:2]}{i:09d}'
      rows.append(f'"{("playing guitar", "abseiling")[i % 2]}",{youtube_id},10,11,{split}')
      _video(os.path.join(work, 'kinetics400', split, f'{youtube_id}_000010_000011.mp4'))
    _write(os.path.join(work, 'kinetics400', 'annotations', f'{split}.csv'), '\n'.join(rows) + '\n')
  # UCF-101: class folders of .avi files and ucfTrainTestlist/ with CRLF line endings.
  classes = ('ApplyEyeMakeup', 'Archery')
  for name in classes:
    for group in (1, 2):
      _video(os.path.join(work, 'UCF-101', name, f'v_{name}_g{group:02d}_c01.avi'), codec='mpeg4')
  lists = os.path.join(work, 'ucfTrainTestlist')
  _write(os.path.join(lists, 'classInd.txt'), ''.join(f'{i + 1} {n}\r\n' for i, n in enumerate(classes)))
  _write(os.path.join(lists, 'trainlist01.txt'),
         ''.join(f'{n}/v_{n}_g01_c01.avi {i + 1}\r\n' for i, n in enumerate(classes)))
  _write(os.path.join(lists, 'testlist01.txt'), ''.join(f'{n}/v_{n}_g02_c01.avi\r\n' for n in classes))
  # HMDB-51: class folders and testTrainMulti_7030_splits/<class>_test_split<N>.txt (1 train, 2 test, 0 unused).
  for name in ('brush_hair', 'cartwheel'):
    tags = []
    for i, tag in enumerate((1, 2, 0)):
      video = f'{name}_#{i}_(take)_&_u_nm_np1_fr_goo_{i}.avi'
      _video(os.path.join(work, 'hmdb51', name, video), codec='mpeg4')
      tags.append(f'{video} {tag} \r\n')
    _write(os.path.join(work, 'testTrainMulti_7030_splits', f'{name}_test_split1.txt'), ''.join(tags))
  # Own videos (one folder per class) and unlabeled footage (a folder, and a list relative to its own folder).
  for split in ('train', 'val'):
    for name in ('left', 'right'):
      _video(os.path.join(work, 'my_videos', split, name, f'{name}_{split}.mp4'))
  for i in range(2):
    _video(os.path.join(work, 'footage', f'walk_{i}.mp4'))
  _write(os.path.join(work, 'my_footage.txt'), '# my recordings\nfootage/walk_0.mp4\nfootage/walk_1.mp4\n')


def make_workdir(work: str) -> None:
  for name in _LINKED:
    os.symlink(os.path.join(_REPO_ROOT, name), os.path.join(work, name))
  os.makedirs(os.path.join(work, 'tmp'))
  _write(os.path.join(work, 'smoke.yaml'), SMOKE_CONFIG)
  _make_raw_datasets(work)


class Runner:
  """Runs selected doc blocks in one scratch folder; a `python -m` command runs once, however often documented.

  A repeated command is skipped as soon as its first copy is scheduled, so blocks that repeat one another belong
  to the same chain (which runs in order).
  """

  def __init__(self, work: str, blocks: Sequence[Block]):
    self.work = work
    self.blocks = blocks
    self._done_blocks: Set[str] = set()
    self._done_commands: Set[str] = set()
    self._lock = threading.Lock()
    self.timings: Dict[str, float] = {}
    env = dict(os.environ)
    env['PATH'] = os.pathsep.join([os.path.dirname(sys.executable), env.get('PATH', '')])
    env['TF_CPP_MIN_LOG_LEVEL'] = '2'
    env.pop('PYTHONPATH', None)  # Commands find the packages from the working folder, as after a clone.
    self.env = env

  def run_steps(self, steps: Iterable[str]) -> None:
    for step in steps:
      selected = select(self.blocks, step)
      if not selected:
        raise AssertionError(f'No documented block contains {step!r}: the docs changed; update CHAINS.')
      for block in selected:
        self.run_block(block)

  def run_block(self, block: Block) -> None:
    with self._lock:
      if block.where in self._done_blocks:
        return
      self._done_blocks.add(block.where)
      commands = []
      for command in block.commands:
        command = substitute(command, self.work)
        key = _normalise(command)
        if command.startswith('python -m ') and key in self._done_commands:
          continue
        self._done_commands.add(key)
        commands.append(command)
    if not commands:
      return
    name = re.sub(r'\W', '_', block.where)
    script = os.path.join(self.work, 'logs', f'{name}.sh')
    _write(script, 'set -eo pipefail\n' + '\n'.join(commands) + '\n')
    started = time.monotonic()
    process = subprocess.run(['bash', script], cwd=self.work, env=self.env, capture_output=True, text=True,
                             timeout=1800, check=False)
    self.timings[block.where] = time.monotonic() - started
    _write(os.path.join(self.work, 'logs', f'{name}.log'), process.stdout + process.stderr)
    if process.returncode:
      tail = '\n'.join((process.stdout + process.stderr).splitlines()[-40:])
      raise AssertionError(f'{block.where}: the documented commands failed (exit {process.returncode}).\n'
                           f'Ran in {self.work}:\n' + '\n'.join(commands) + f'\n--- last output:\n{tail}')


# ----------------------------------------------------------------------------------------------------------------
# Paths the docs write and read.


def _expand_loops(command: str) -> List[str]:
  """`for V in a b; do BODY; done` -> BODY once per value with $V / ${V} replaced (nested loops too)."""
  match = re.match(r'^for (\w+) in ([^;\n]*);\s*do\s+(.*)\s*done\s*$', command.strip(), re.DOTALL)
  if not match:
    return [command]
  name, values, body = match.group(1), match.group(2).split(), match.group(3)
  result = []
  for value in values:
    expanded = re.sub(r'\$\{?' + name + r'\b\}?', value, body)
    for part in re.split(r'\n|;\s*(?=\S)', expanded.strip().rstrip(';')):
      if part.strip() and part.strip() != 'done':
        result.extend(_expand_loops(part.strip()) if part.strip().startswith('for ') else [part.strip()])
  return result


@dataclasses.dataclass
class Invocation:
  """One `python -m <module>` command of the docs with its flags."""
  where: str
  module: str
  flags: Dict[str, str]
  overrides: Dict[str, str]


def invocations(blocks: Sequence[Block]) -> List[Invocation]:
  result = []
  for block in blocks:
    for command in block.commands:
      for simple in _expand_loops(command):
        simple = re.sub(r'\$\([^)]*\)', ' ', simple.split(' # ')[0])  # $(...) parts: optional flags.
        try:
          tokens = shlex.split(simple, comments=True)
        except ValueError:
          continue
        if len(tokens) < 3 or tokens[1] != '-m':
          continue
        flags, key = {}, None
        for token in tokens[3:]:
          if token.startswith('--'):
            key, _, value = token[2:].partition('=')
            flags[key] = value
            key = None if value else key
          elif key:
            flags[key], key = token, None
        overrides = dict(item.split('=', 1) for item in re.split(r',(?=[\w.]+=)', flags.get('params_override', ''))
                         if '=' in item)
        result.append(Invocation(block.where, tokens[2], flags, overrides))
  return result


def _root_free(path: str) -> str:
  """`gs://YOUR_BUCKET/x`, `data/x`, `/tmp/x` -> `x`: the docs' roots stand for one another."""
  path = path.strip().strip('\'"')
  return re.sub(r'^(gs://[\w-]+/|data/|/tmp/)', '', path).rstrip('/')


def _folder_and_prefix(pattern: str) -> Tuple[str, str]:
  folder, _, name = _root_free(pattern).rpartition('/')
  return folder, re.split(r'[-*]', name, maxsplit=1)[0]


def _matches(read: Tuple[str, str], written: Tuple[str, str]) -> bool:
  """Whether a read (folder, split prefix) may name a written one; `{split}`-like placeholders match digits."""
  regex = ''.join(r'\d+' if part.startswith('{') else re.escape(part) for part in re.split(r'(\{\w+\})', read[0]))
  return re.fullmatch(regex, written[0]) is not None and read[1] == written[1]


def dataset_writes(calls: Sequence[Invocation]) -> List[Tuple[str, Tuple[str, str]]]:
  """(where, (folder, split prefix)) of every dataset the docs write whose folder an experiment should read."""
  writes = []
  for call in calls:
    out = call.flags.get('output_dir', '')
    if call.module == 'data_tools.convert':
      if call.flags.get('source') in ('kinetics', 'ucf101', 'hmdb51') or out.startswith('demo_output/'):
        writes.append((call.where, _folder_and_prefix(f'{out}/{call.flags.get("split", "")}-*')))
    elif call.module == 'data_tools.make_subset':
      writes.append((call.where, _folder_and_prefix(f'{out}/{call.flags.get("prefix") or "train"}-*')))
    elif call.module == 'data_tools.ava':
      writes.append((call.where, _folder_and_prefix(f'{out}/{call.flags.get("split", "train")}-*')))
    elif call.module == 'data_tools.synthetic.synthetic_detection' and call.flags.get('format', 'records') == 'records':
      out = out or 'demo_output/detection_tfrecords'
      writes += [(call.where, _folder_and_prefix(f'{out}/{split}-*')) for split in ('train', 'val')]
  return [w for w in writes if '$' not in w[1][0]]


def experiment_reads() -> Dict[str, List[Tuple[str, str]]]:
  """Default training / evaluation input folders of every registered CVRL experiment."""
  from official.core import exp_factory  # pylint: disable=g-import-not-at-top  (loads TensorFlow)
  from official_cvrl import registry_imports  # pylint: disable=g-import-not-at-top,unused-import
  reads = collections.defaultdict(list)
  for name in sorted(exp_factory._REGISTERED_CONFIGS):  # pylint: disable=protected-access
    if name.startswith('cvrl_'):
      task = exp_factory.get_exp_config(name).task
      for data in (task.train_data, task.validation_data):
        for path in ([data.input_path] if isinstance(data.input_path, str) else data.input_path):
          reads[name].append(_folder_and_prefix(path))
  return reads


# Inputs that documented commands read but no documented `python -m` command writes, and where they come from.
EXTERNAL_INPUTS = {
    'r3d_1x_k400_800ep': "the authors' released checkpoint, downloaded and unpacked (curl, tar) in docs/evaluation.md",
}


def path_problems(blocks: Sequence[Block], experiments: Dict[str, List[Tuple[str, str]]]) -> List[str]:
  """Folders and files the docs read but do not write, and dataset folders they write that nothing reads.

  Args:
    blocks: the docs' shell blocks (marked ones too: a command not run here must still name the right folders).
    experiments: {experiment: [(folder, split prefix), ...]} of what registered experiments read by default.

  Returns:
    One line per problem, naming the doc, line and path.
  """
  calls = invocations(blocks)
  writes = dataset_writes(calls)
  read_by_experiments = [r for reads in experiments.values() for r in reads]
  doc_reads = []
  for call in calls:
    for key in ('task.train_data.input_path', 'task.validation_data.input_path'):
      if key in call.overrides:
        doc_reads.append((call.where, key, _folder_and_prefix(call.overrides[key])))
    if call.module in ('data_tools.verify', 'data_tools.make_subset') and 'input' in call.flags:
      doc_reads.append((call.where, '--input', _folder_and_prefix(call.flags['input'])))
  problems = []
  for where, written in writes:
    if not any(_matches(read, written) for read in read_by_experiments + [r for _, _, r in doc_reads]):
      problems.append(f'{where} writes {written[0]}/{written[1]}-*, which no registered experiment and no '
                      'documented command reads.')
  for where, key, read in doc_reads:
    if '$' not in read[0] and not any(_matches(read, written) for _, written in writes + [
        (None, _folder_and_prefix(f'{c.flags.get("output_dir", "")}/{c.flags.get("split", "")}-*'))
        for c in calls if c.module == 'data_tools.convert']):
      problems.append(f'{where} reads {key}={read[0]}/{read[1]}-*, which no documented command writes.')
  # Demo experiments run without overrides in the docs: what they read by default must be documented output.
  for name, reads in experiments.items():
    if name.endswith('_demo'):
      for read in reads:
        if not any(_matches(read, written) for _, written in writes):
          problems.append(f'{name} reads {read[0]}/{read[1]}-* by default, which no documented command writes.')
  # Checkpoints, exports and embeddings read by one command are written by another.
  model_dirs = {_root_free(c.flags[k]) for c in calls for k in ('model_dir', 'model_dir_root', 'export_dir',
                                                                'output') if c.flags.get(k)}
  for call in calls:
    for key, value in [(f'--{k}', call.flags.get(k, '')) for k in ('checkpoint_path', 'saved_model_dir',
                                                                   'embeddings', 'database')] + [
                           ('task.init_checkpoint', call.overrides.get('task.init_checkpoint', ''))]:
      value = value.strip('\'"')
      if (value and '$' not in value and '...' not in value and _root_free(value) not in model_dirs and
          value not in EXTERNAL_INPUTS):
        problems.append(f'{call.where} reads {key}={value}, which no documented command writes.')
  return problems


# ----------------------------------------------------------------------------------------------------------------
# Tests.


class DocsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.blocks, cls.problems = all_blocks()

  def test_blocks_are_labelled_and_markers_give_reasons(self):
    self.assertEmpty(self.problems, '\n'.join(self.problems))

  def test_extraction_rules(self):
    blocks, problems = parse_markdown('x.md', '\n'.join([
        'Text with `python -m inline` code.',
        '```bash',
        '# a comment',
        'python -m a --b=1 \\',
        '    --c 2   # explained',
        'for s in train val; do',
        '  python -m d --split $s',
        'done',
        '```',
        '<!-- not-run: needs a TPU -->',
        '',
        '```sh',
        'python -m e',
        '```',
        '```console',
        '$ python -m f',
        'output line',
        '```',
        '```',
        'python -m g',
        '```',
        '<!-- not-run: -->',
        '```python',
        'print(1)',
        '```']))
    self.assertEqual([(b.line, b.commands, b.not_run) for b in blocks], [
        (2, ['python -m a --b=1 --c 2   # explained', 'for s in train val; do\npython -m d --split $s\ndone'], None),
        (12, ['python -m e'], 'needs a TPU'),
        (15, ['python -m f'], None)])
    self.assertEqual(problems, [
        'x.md:19: an unlabelled code block holds commands: label it ```bash (then run or mark it).',
        'x.md:23: the not-run marker gives no reason: <!-- not-run: <why> -->.'])
    self.assertEqual(_expand_loops(blocks[0].commands[1]), ['python -m d --split train', 'python -m d --split val'])

  def test_every_block_is_run_or_marked(self):
    steps = list(FIRST) + [step for chain in CHAINS.values() for step in chain]
    selected = {b.where for step in steps for b in select(self.blocks, step)}
    stale = [step for step in steps if not select(self.blocks, step)]
    self.assertEmpty(stale, f'These steps of tests/docs_test.py select no documented block (the docs changed; '
                     f'update CHAINS): {stale}')
    marked_and_run = sorted(b.where for b in self.blocks if b.not_run is not None and b.where in selected)
    self.assertEmpty(marked_and_run, 'Blocks marked not-run are also run by a step: drop the marker or the step.')
    uncovered = [f'{b.where}: {b.commands[0][:100]}' for b in self.blocks
                 if b.not_run is None and b.where not in selected]
    self.assertEmpty(uncovered, 'Documented commands neither run by tests/docs_test.py nor marked '
                     '<!-- not-run: reason --> before their code block:\n' + '\n'.join(uncovered))

  def test_substitutions_change_only_what_they_say(self):
    work = '/W'
    self.assertEqual(substitute('python -m data_tools.synthetic.demo_dataset --output_dir=demo_output/raw_videos',
                                work),
                     'python -m data_tools.synthetic.demo_dataset --output_dir=demo_output/raw_videos --num_train=16 '
                     '--num_val=8 --num_test=8')
    self.assertEqual(substitute("python -m official_cvrl.train --experiment=x --params_override='a=gs://YOUR_BUCKET/k'"
                                ' --model_dir=/tmp/m', work),
                     "python -m official_cvrl.train --experiment=x --params_override='a=data/k' --model_dir=/W/tmp/m "
                     '--config_file=/W/smoke.yaml')
    self.assertEqual(substitute('python -m data_tools.convert --output_dir data/kinetics400', work),
                     'python -m data_tools.convert --output_dir data/kinetics400')

  def test_docs_write_what_experiments_and_commands_read(self):
    problems = path_problems(self.blocks, experiment_reads())
    self.assertEmpty(problems, '\n'.join(problems))

  def test_path_check_catches_a_folder_nothing_reads(self):
    experiments = {'cvrl_semi_supervised_kinetics400': [('kinetics400_train_{label_percent}pct', 'train'),
                                                         ('kinetics400', 'val')]}
    block = Block('README.md', 1, [
        "python -m data_tools.make_subset --input='data/kinetics400/train-*.tfrecord' --fraction=0.01 "
        '--output_dir=data/kinetics400_1pct',
        "python -m official_cvrl.train --params_override='task.init_checkpoint=gs://YOUR_BUCKET/runs/nowhere'"], None)
    self.assertEqual(path_problems([block], experiments), [
        'README.md:1 writes kinetics400_1pct/train-*, which no registered experiment and no documented command reads.',
        'README.md:1 reads --input=kinetics400/train-*, which no documented command writes.',
        'README.md:1 reads task.init_checkpoint=gs://YOUR_BUCKET/runs/nowhere, which no documented command writes.'])
    block.commands[0] = block.commands[0].replace('kinetics400_1pct', 'kinetics400_train_1pct')
    self.assertLen(path_problems([block], experiments), 2)

  def test_documented_commands_run(self):
    # Kept when the test fails (the error names it: each block's script and log are in logs/), removed otherwise.
    work = tempfile.mkdtemp(prefix='cvrl_docs_test_')
    make_workdir(work)
    runner = Runner(work, [b for b in self.blocks if b.not_run is None])
    started = time.monotonic()
    runner.run_steps(FIRST)
    with concurrent.futures.ThreadPoolExecutor(len(CHAINS)) as pool:
      futures = [pool.submit(runner.run_steps, steps) for steps in CHAINS.values()]
      errors = [f.exception() for f in futures if f.exception()]
    if errors:
      raise errors[0]
    slowest = sorted(runner.timings.items(), key=lambda kv: -kv[1])[:5]
    print(f'docs commands: {len(runner.timings)} blocks in {time.monotonic() - started:.0f} s; slowest: '
          + ', '.join(f'{w} {s:.0f} s' for w, s in slowest))
    # The pipeline's products, each written where the next command read it.
    for path in ('demo_output/pretrain/params.yaml', 'demo_output/embeddings/test.npz',
                 'demo_output/embeddings/train.npz', 'data/kinetics400_train_1pct/train_video_ids.txt',
                 'data/ucf101_split1/label_map.txt', 'data/hmdb51_split1/label_map.txt'):
      self.assertTrue(os.path.exists(os.path.join(work, path)), path)
    shutil.rmtree(work)


if __name__ == '__main__':
  absltest.main()
