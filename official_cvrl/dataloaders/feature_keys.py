"""Feature keys of the TFRecord SequenceExamples every part of the project reads and writes.

The two keys Model Garden's `official.vision.dataloaders.video_input` reads are kept exactly, so records written by
`data_tools` train Model Garden's video classification and records made for Model Garden (or DMVR, which uses the
same keys) train ours. The remaining keys are optional metadata: readers must not require them.
"""

# Sequence (per-frame) features.
IMAGE_KEY = 'image/encoded'  # bytes: one JPEG-encoded RGB frame per step.

# Context (per-video) features.
LABEL_INDEX_KEY = 'clip/label/index'  # int64 list: class indices (one for single-label data).
LABEL_STRING_KEY = 'clip/label/string'  # bytes list: class names, same order as the indices (DMVR's key).
VIDEO_ID_KEY = 'clip/data_path'  # bytes: a stable video id (relative path or YouTube id + span).
SOURCE_FPS_KEY = 'clip/source_fps'  # float: frame rate of the source file.
FPS_KEY = 'clip/fps'  # float: frame rate of the stored frames (after resampling).
NUM_FRAMES_KEY = 'clip/num_frames'  # int64: number of stored frames.
HEIGHT_KEY = 'image/height'  # int64: stored frame height.
WIDTH_KEY = 'image/width'  # int64: stored frame width.
START_TIMESTAMP_KEY = 'clip/start/timestamp'  # int64 microseconds, for clips cut from longer videos (DMVR's key).
END_TIMESTAMP_KEY = 'clip/end/timestamp'  # int64 microseconds.

# Label value stored for unlabeled videos (pretraining on your own footage).
UNLABELED_INDEX = -1
