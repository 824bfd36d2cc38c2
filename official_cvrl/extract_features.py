r"""Embeds videos with an exported CVRL SavedModel: video files or TFRecords in, one embedding per video out.

  # Video files in class folders (<input>/<class>/<video>; the class gives the label):
  python -m official_cvrl.extract_features --saved_model_dir=demo_output/saved_model \
      --input=demo_output/raw_videos/test --input_format=class_folders --output=test_embeddings.npz --num_clips=4

  # Any folder (scanned recursively) or a text file with one video path per line, unlabeled:
  python -m official_cvrl.extract_features --saved_model_dir=... --input=my_videos/ --output=emb.npz

  # TFRecord SequenceExamples (the training format; ids and labels come from the records):
  python -m official_cvrl.extract_features --saved_model_dir=... --input='data/val-*.tfrecord' \
      --input_format=tfrecord --output=val_embeddings.npz

Video files are decoded with `data_tools.video_reader` (PyAV) at --fps with their short side resized to the
model's crop size and cut to their centre square (or, with `--num_crops=3`, to three squares at both ends and
the centre of the long side, the paper's 3-crop testing); `--num_clips` evenly spaced clips of the exported clip
length and stride are taken. TFRecord videos are sampled by `export_module.sample_clips_from_example`, the function the
`serve_examples` signature runs. The clips of a video go through the `serve_video_clips` signature, which
averages them into one embedding per video.

Output (`.npz`, read with `numpy.load`): `video_ids` (str [N]), `labels` (int64 [N], -1 when unknown),
`class_names` (str, when known), and one float32 [N, D] array per model output (`features`,
`normalized_features`, plus `projection` or `logits`/`probabilities` depending on the checkpoint). `.tfrecord`
output holds one `tf.train.Example` per video with the same keys ('video_id', 'label', and float lists).

A video that cannot be read (missing, corrupt, no video stream, zero frames, a bad record) is skipped, printed as
a `failed:` line, and listed in `<output>.failures.jsonl` (one JSON object per failure: video_id, reason,
message); the command never stops on one bad video. It exits with status 1 only when no video could be embedded.
"""
import collections
import concurrent.futures
import dataclasses
import io
import json
import os
import sys
import time
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, TypeVar

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from data_tools import label_map as label_map_lib
from data_tools import report
from data_tools import sources
from data_tools import video_reader
from official_cvrl.dataloaders import feature_keys
from official_cvrl.ops import multi_view
from official_cvrl.ops import video_augment
from official_cvrl.serving import export_module
from official_cvrl.utils import errors
from official_cvrl.utils import input_files
# pylint: enable=g-import-not-at-top,wrong-import-position

INPUT_FORMATS = ('videos', 'class_folders', 'tfrecord')

FLAGS = flags.FLAGS

T = TypeVar('T')


@dataclasses.dataclass
class Failure:
  """A video that got no embedding."""
  video_id: str
  reason: str
  message: str


@dataclasses.dataclass
class VideoClips:
  """The sampled clips of one video, ready to embed."""
  video_id: str
  label: int
  clips: np.ndarray  # uint8 [num_clips * num_crops, T, S, S, 3]


def resolve_saved_model(path: str) -> str:
  """A version folder as is; for an export_dir, its highest all-digit version folder.

  Raises:
    UserInputError: when neither is found.
  """
  if tf.io.gfile.exists(os.path.join(path, 'saved_model.pb')):
    return path
  versions = []
  if tf.io.gfile.isdir(path):
    versions = [int(name.rstrip('/')) for name in tf.io.gfile.listdir(path) if name.rstrip('/').isdigit()]
    versions = [v for v in versions if tf.io.gfile.exists(os.path.join(path, str(v), 'saved_model.pb'))]
  if not versions:
    raise errors.UserInputError(
        f'--saved_model_dir={path} holds no SavedModel (no saved_model.pb, nor version folders with one). '
        'Export one with `python -m official_cvrl.serving.export_saved_model` (docs/serving.md).')
  return os.path.join(path, str(max(versions)))


class Embedder:
  """Calls the `serve_video_clips` signature of an exported model and reads its clip geometry."""

  def __init__(self, saved_model_dir: str):
    self.path = resolve_saved_model(saved_model_dir)
    self._loaded = tf.saved_model.load(self.path)
    if export_module.SIGNATURE_VIDEO_CLIPS not in self._loaded.signatures:
      raise errors.UserInputError(f'{self.path} has no "{export_module.SIGNATURE_VIDEO_CLIPS}" signature: it was '
                                  'not written by official_cvrl.serving.export_saved_model.')
    self._signature = self._loaded.signatures[export_module.SIGNATURE_VIDEO_CLIPS]
    self.num_frames = int(self._loaded.num_frames.numpy())
    self.temporal_stride = int(self._loaded.temporal_stride.numpy())
    self.crop_size = int(self._loaded.crop_size.numpy())

  def __call__(self, clips: np.ndarray) -> Dict[str, np.ndarray]:
    """uint8 `[videos, num_clips, T, H, W, 3]` -> {output: float32 `[videos, D]`}."""
    outputs = self._signature(clips=tf.constant(clips, tf.uint8))
    return {key: value.numpy() for key, value in outputs.items()}


def clip_indices(num_video_frames: int, num_frames: int, stride: int, num_clips: int) -> np.ndarray:
  """Frame indices `[num_clips, num_frames]` of evenly spaced clips (the sampling of `serve_examples`)."""
  return multi_view.clips_frame_indices(num_video_frames, num_frames, stride, num_clips).numpy()


def center_square(frames: np.ndarray) -> np.ndarray:
  """The centred square (side = short side) of frames `[N, H, W, 3]`, offsets as `central_crop_window`."""
  height, width = frames.shape[1:3]
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  return frames[:, top:top + side, left:left + side]


def square_views(frames: np.ndarray, num_crops: int) -> List[np.ndarray]:
  """Squares (side = short side) of frames `[N, H, W, 3]`: the centre one, or both ends and the centre of the
  long side (the windows of `video_augment.three_crop_windows`, as the evaluation's 3-crop testing)."""
  if num_crops == 1:
    return [center_square(frames)]
  windows = video_augment.three_crop_windows(tf.constant(frames.shape[1:3])).numpy()
  return [frames[:, top:top + height, left:left + width] for top, left, height, width in windows]


def load_video_clips(record: sources.VideoRecord, label: int, embedder: Embedder, num_clips: int, fps: float,
                     short_side: int, num_crops: int = 1) -> VideoClips:
  """Decodes a video file and samples its clips.

  Frames are decoded with their short side at `short_side` and cut to their centre square, so the clips of all
  videos have one shape and batch together; the model then resizes them to its crop size (a no-op at the
  default `short_side`, the crop size).

  Raises:
    VideoReadError: when the video cannot be read.
  """
  frames, _ = video_reader.read_video(record.path, fps=fps, short_side=short_side, start=record.start,
                                      end=record.end)
  squares = square_views(frames, num_crops)
  indices = clip_indices(len(frames), embedder.num_frames, embedder.temporal_stride, num_clips)
  return VideoClips(record.video_id, label, np.stack([square[clip] for clip in indices for square in squares]))


def _prefetch_ordered(function: Callable[..., T], items: Sequence, workers: int, window: int) -> Iterator:
  """Yields (item, result or exception) in order, running `function` on up to `window` items ahead in threads."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
    pending = collections.deque()
    iterator = iter(items)
    for item in iterator:
      pending.append((item, pool.submit(function, item)))
      if len(pending) >= window:
        break
    while pending:
      item, future = pending.popleft()
      next_item = next(iterator, None)
      if next_item is not None:
        pending.append((next_item, pool.submit(function, next_item)))
      try:
        yield item, future.result()
      except Exception as e:  # pylint: disable=broad-except  (one bad video must not stop the run)
        yield item, e


def list_videos(input_path: str, input_format: str, label_map_path: Optional[str]):
  """Returns (records, {video_id: label index}, class names or None) for the video-file formats.

  Raises:
    UserInputError: when the input cannot be listed.
  """
  try:
    listing = (sources.list_folder(input_path) if input_format == 'class_folders'
               else sources.list_unlabeled(input_path))
    if listing.class_names is None:
      return listing.records, {}, None
    if label_map_path:
      names = label_map_lib.read(label_map_path).names
    else:
      names = label_map_lib.sorted_names(listing.class_names)
  except (FileNotFoundError, ValueError) as e:
    raise errors.UserInputError(f'--input={input_path} (--input_format={input_format}): {e}') from None
  index = {name: i for i, name in enumerate(names)}
  labels = {r.video_id: index.get(r.label, feature_keys.UNLABELED_INDEX) for r in listing.records}
  return listing.records, labels, list(names)


def video_file_clips(records, labels: Dict[str, int], class_names: Optional[List[str]], embedder: Embedder,
                     num_clips: int, fps: float, short_side: int, workers: int, window: int,
                     failures: List[Failure], num_crops: int = 1) -> Iterator[VideoClips]:
  """Yields the clips of each readable video; unreadable ones are appended to `failures`."""
  for record in records:
    if class_names is not None and labels.get(record.video_id, -1) < 0:
      failures.append(Failure(record.video_id, report.UNKNOWN_LABEL,
                              f'class folder "{record.label}" is not in --label_map; add it or fix the folder.'))
  records = [r for r in records if class_names is None or labels.get(r.video_id, -1) >= 0]

  def load(record):
    return load_video_clips(record, labels.get(record.video_id, feature_keys.UNLABELED_INDEX), embedder,
                            num_clips, fps, short_side, num_crops)

  for record, result in _prefetch_ordered(load, records, workers, window):
    if isinstance(result, video_reader.VideoReadError):
      failures.append(Failure(record.video_id, result.reason, str(result)))
    elif isinstance(result, Exception):
      failures.append(Failure(record.video_id, report.UNEXPECTED_ERROR,
                              f'{record.path}: {type(result).__name__}: {result}'))
    else:
      yield result


def _record_id(serialized: bytes, fallback: str) -> str:
  """The record's 'clip/data_path', or `fallback` when absent or unparsable."""
  try:
    context, _ = tf.io.parse_single_sequence_example(
        serialized, context_features={feature_keys.VIDEO_ID_KEY: tf.io.FixedLenFeature((), tf.string, '')})
    return context[feature_keys.VIDEO_ID_KEY].numpy().decode('utf-8', 'replace') or fallback
  except tf.errors.OpError:
    return fallback


def tfrecord_clips(input_path: str, embedder: Embedder, num_clips: int, batch_size: int,
                   failures: List[Failure], num_crops: int = 1) -> Iterator[VideoClips]:
  """Yields the clips of each record of the TFRecord set; bad records and corrupt files go to `failures`."""
  files = input_files.resolve_input_files(input_path, key='--input')

  @tf.function(input_signature=[tf.TensorSpec([None], tf.string)])
  def sample(serialized):
    return tf.map_fn(
        lambda s: export_module.sample_clips_from_example(s, num_clips, embedder.num_frames,
                                                          embedder.temporal_stride, embedder.crop_size,
                                                          num_crops=num_crops),
        serialized,
        fn_output_signature={
            'clips': tf.TensorSpec([num_clips * num_crops, embedder.num_frames, embedder.crop_size, embedder.crop_size, 3],
                                   tf.uint8),
            export_module.VIDEO_ID: tf.TensorSpec([], tf.string),
            export_module.LABEL: tf.TensorSpec([], tf.int64)})

  def to_clips(batch: List[bytes], ids: List[str]) -> Iterator[VideoClips]:
    try:
      sampled = sample(tf.constant(batch))
      for i, fallback in enumerate(ids):
        video_id = sampled[export_module.VIDEO_ID][i].numpy().decode('utf-8', 'replace') or fallback
        yield VideoClips(video_id, int(sampled[export_module.LABEL][i]), sampled['clips'][i].numpy())
    except tf.errors.OpError:
      if len(batch) == 1:
        raise
      for record, fallback in zip(batch, ids):  # Find the bad record(s) of the batch.
        try:
          yield from to_clips([record], [fallback])
        except tf.errors.OpError as e:
          failures.append(Failure(_record_id(record, fallback), report.UNREADABLE,
                                  f'{fallback}: {e.message.splitlines()[0]}'))

  for path in files:
    batch, ids = [], []
    index = 0
    try:
      for record in tf.data.TFRecordDataset(path):
        batch.append(record.numpy())
        ids.append(f'{path}#{index}')
        index += 1
        if len(batch) == batch_size:
          yield from to_clips(batch, ids)
          batch, ids = [], []
    except tf.errors.DataLossError as e:
      failures.append(Failure(f'{path}#{index}', report.UNREADABLE,
                              f'{path}: corrupt TFRecord file after {index} records ({e.message.splitlines()[0]}); '
                              'the remaining records of this file were skipped.'))
    if batch:
      yield from to_clips(batch, ids)


class Progress:
  """Prints 'embedded n/total videos, f failed, r videos/s, ETA' every `interval` seconds (stderr)."""

  def __init__(self, total: Optional[int], interval: float):
    self._total = total
    self._interval = interval
    self._start = self._last = time.time()

  def update(self, done: int, failed: int, force: bool = False) -> None:
    now = time.time()
    if not self._interval or (not force and now - self._last < self._interval):
      return
    self._last = now
    rate = done / max(now - self._start, 1e-9)
    line = f'embedded {done}' + (f'/{self._total}' if self._total else '') + f' videos, {failed} failed, '
    line += f'{rate:.1f} videos/s'
    if self._total and rate > 0:
      line += f', ETA {max(self._total - done - failed, 0) / rate:.0f} s'
    print(line, file=sys.stderr, flush=True)


def _batches(items: Iterable[T], size: int) -> Iterator[List[T]]:
  batch = []
  for item in items:
    batch.append(item)
    if len(batch) == size:
      yield batch
      batch = []
  if batch:
    yield batch


def embed_all(items: Iterable[VideoClips], embedder: Embedder, batch_size: int, failures: List[Failure],
              progress: Progress):
  """Embeds the videos batch by batch; a batch the model rejects is retried video by video.

  Returns:
    (video ids, labels, {output: float32 [N, D]}).
  """
  ids, labels, rows = [], [], collections.defaultdict(list)

  def add(batch: List[VideoClips]) -> None:
    outputs = embedder(np.stack([item.clips for item in batch]))
    for i, item in enumerate(batch):
      ids.append(item.video_id)
      labels.append(item.label)
      for key, value in outputs.items():
        rows[key].append(value[i])

  for batch in _batches(items, batch_size):
    try:
      add(batch)
    except tf.errors.OpError:
      for item in batch:
        try:
          add([item])
        except tf.errors.OpError as e:
          failures.append(Failure(item.video_id, report.UNEXPECTED_ERROR,
                                  f'the model rejected the clips: {e.message.splitlines()[0]}'))
    progress.update(len(ids), len(failures))
  progress.update(len(ids), len(failures), force=True)
  return ids, labels, {key: np.stack(value).astype(np.float32) for key, value in rows.items()}


def write_npz(path: str, ids: List[str], labels: List[int], outputs: Dict[str, np.ndarray],
              class_names: Optional[List[str]], saved_model: str, num_clips: int, num_crops: int = 1) -> None:
  """Writes the embeddings atomically (temporary file, then rename)."""
  arrays = dict(outputs)
  arrays.update(video_ids=np.array(ids, dtype=str), labels=np.array(labels, dtype=np.int64),
                saved_model=np.array(saved_model), num_clips=np.array(num_clips), num_crops=np.array(num_crops))
  if class_names is not None:
    arrays['class_names'] = np.array(class_names, dtype=str)
  buffer = io.BytesIO()  # np.savez seeks back into the file, which gfile's writers cannot.
  np.savez(buffer, **arrays)
  temporary = f'{path}.tmp-{os.getpid()}'
  with tf.io.gfile.GFile(temporary, 'wb') as f:
    f.write(buffer.getvalue())
  tf.io.gfile.rename(temporary, path, overwrite=True)


def write_tfrecord(path: str, ids: List[str], labels: List[int], outputs: Dict[str, np.ndarray]) -> None:
  """Writes one tf.train.Example per video: 'video_id', 'label' and a float list per output."""
  temporary = f'{path}.tmp-{os.getpid()}'
  with tf.io.TFRecordWriter(temporary) as writer:
    for i, video_id in enumerate(ids):
      feature = {
          'video_id': tf.train.Feature(bytes_list=tf.train.BytesList(value=[video_id.encode('utf-8')])),
          'label': tf.train.Feature(int64_list=tf.train.Int64List(value=[labels[i]])),
      }
      for key, value in outputs.items():
        feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=value[i].tolist()))
      writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
  tf.io.gfile.rename(temporary, path, overwrite=True)


def failure_report_path(output: str) -> str:
  return output + '.failures.jsonl'


def run(saved_model_dir: str, input_path: str, output: str, input_format: str = 'videos', num_clips: int = 1,
        batch_size: int = 8, fps: float = video_reader.DEFAULT_FPS, short_side: int = 0,
        label_map_path: Optional[str] = None, workers: int = 2, progress_interval: float = 10.0,
        num_crops: int = 1) -> int:
  """Extracts the embeddings; see the module docstring.

  Returns:
    The number of videos embedded.

  Raises:
    UserInputError: on bad arguments or an unusable SavedModel or input.
  """
  if input_format not in INPUT_FORMATS:
    raise errors.UserInputError(f'--input_format={input_format}; expected one of {INPUT_FORMATS}.')
  if not output.endswith(('.npz', '.tfrecord')):
    raise errors.UserInputError(f'--output={output} must end with .npz or .tfrecord (the output format).')
  if num_clips < 1 or batch_size < 1:
    raise errors.UserInputError(f'--num_clips and --batch_size must be >= 1, got {num_clips} and {batch_size}.')
  if num_crops not in multi_view.TEST_CROP_COUNTS:
    raise errors.UserInputError(f'--num_crops must be 1 or 3, got {num_crops}.')
  embedder = Embedder(saved_model_dir)
  failures: List[Failure] = []
  class_names = None
  if input_format == 'tfrecord':
    items = tfrecord_clips(input_path, embedder, num_clips, batch_size, failures, num_crops)
    total = None
  else:
    records, labels, class_names = list_videos(input_path, input_format, label_map_path)
    items = video_file_clips(records, labels, class_names, embedder, num_clips, fps,
                             short_side or embedder.crop_size, workers, window=2 * batch_size, failures=failures,
                             num_crops=num_crops)
    total = len(records)
  print(f'Embedding {total if total is not None else "the"} videos of {input_path} with {embedder.path} '
        f'({num_clips} clip(s) x {num_crops} crop(s) of {embedder.num_frames} frames at stride {embedder.temporal_stride}, '
        f'{embedder.crop_size}x{embedder.crop_size}).', file=sys.stderr, flush=True)
  ids, labels_out, outputs = embed_all(items, embedder, batch_size, failures, Progress(total, progress_interval))

  output_dir = os.path.dirname(output)
  if output_dir:
    tf.io.gfile.makedirs(output_dir)
  with tf.io.gfile.GFile(failure_report_path(output), 'w') as f:
    for failure in failures:
      f.write(json.dumps(dataclasses.asdict(failure)) + '\n')
  for failure in failures:
    print(f'failed: {failure.video_id}: {failure.reason}: {failure.message}', file=sys.stderr, flush=True)
  if ids:
    if output.endswith('.npz'):
      write_npz(output, ids, labels_out, outputs, class_names, embedder.path, num_clips, num_crops)
    else:
      write_tfrecord(output, ids, labels_out, outputs)
  summary = f'Wrote {len(ids)} embeddings to {output}' if ids else 'No video could be embedded; nothing written'
  print(f'{summary}; {len(failures)} video(s) failed (listed in {failure_report_path(output)}).', flush=True)
  return len(ids)


def define_flags() -> None:
  """Defines the command-line flags (called only when run as a script, so importing this module is safe)."""
  flags.DEFINE_string(
      'saved_model_dir', None, 'An export_dir of export_saved_model (its highest version is used) or one version '
      'folder.')
  flags.DEFINE_string(
      'input', None, 'videos: a folder (scanned recursively) or a text file of video paths; class_folders: a folder '
      '<input>/<class>/<video>; tfrecord: comma-separated globs of TFRecord files.')
  flags.DEFINE_enum('input_format', 'videos', INPUT_FORMATS, 'How to read --input.')
  flags.DEFINE_string('output', None, 'Output file: <name>.npz or <name>.tfrecord.')
  flags.DEFINE_integer('num_clips', 1, 'Evenly spaced clips averaged into each video\'s embedding.')
  flags.DEFINE_integer(
      'num_crops', 1, 'Spatial views per clip averaged too: 1 (centre square) or 3 (both ends and centre of the '
      'long side, the paper\'s 3-crop testing).')
  flags.DEFINE_integer('batch_size', 8, 'Videos per model call (each with --num_clips clips).')
  flags.DEFINE_float(
      'fps', video_reader.DEFAULT_FPS, 'Video files: decoding frame rate (0 keeps each file\'s rate); use the rate '
      'the training TFRecords were converted at (data_tools.convert --fps) so that a clip spans the same time.')
  flags.DEFINE_integer(
      'short_side', 0, 'Video files: short side the frames are decoded at; 0 = the model\'s crop size.')
  flags.DEFINE_string(
      'label_map', None, 'class_folders: label map file (one class per line, line i = index i), e.g. the '
      'label_map.txt of the converted TFRecords, so indices agree with them; default: sorted folder names.')
  flags.DEFINE_integer('workers', 2, 'Threads decoding video files.')
  flags.DEFINE_float('progress_interval', 10.0, 'Seconds between progress lines; 0 = none.')
  flags.mark_flags_as_required(['saved_model_dir', 'input', 'output'])


def main(_):
  try:
    embedded = run(FLAGS.saved_model_dir, FLAGS.input, FLAGS.output, FLAGS.input_format, FLAGS.num_clips,
                   FLAGS.batch_size, FLAGS.fps, FLAGS.short_side, FLAGS.label_map, FLAGS.workers,
                   FLAGS.progress_interval, FLAGS.num_crops)
  except errors.UserInputError as e:
    print(f'error: {e}', file=sys.stderr, flush=True)
    sys.exit(2)
  sys.exit(0 if embedded else 1)


if __name__ == '__main__':
  define_flags()
  app.run(main)
