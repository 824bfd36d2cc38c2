"""Drops two known-harmless warnings that Apache Beam logs while importing its optional Google Cloud back-ends.

`import apache_beam` tries its Google Cloud Storage file system and its BigQuery clients. Without the
`google-cloud-storage` and `apitools` packages (not needed here: our tools read `gs://` paths through TensorFlow's
file system layer, and nothing uses BigQuery) every command printed

  Failed to import GCSFileSystem; loading of this filesystem will be skipped. Error details: cannot import name
  'storage' from 'google.cloud' (unknown location)
  WARNING:root:apitools not found, and bigquery client libraries are not available despite the import not raising
  an ImportError.

which reads like an error on a run that succeeds. Only these two messages are dropped, by exact text on the logger
Beam uses for each: any other warning, including a GCSFileSystem import failure with another cause, still shows.
The filters stay on the loggers: Beam may import its BigQuery clients again later (e.g. in a worker).
"""

import logging

# (logger name, message prefix, text the message must also contain): the exact messages of apache_beam 2.77's
# apache_beam/io/filesystems.py and apache_beam/io/gcp/internal/clients/bigquery/__init__.py.
KNOWN_HARMLESS = (
    ('apache_beam.io.filesystems', 'Failed to import GCSFileSystem;', "cannot import name 'storage'"),
    ('', 'apitools not found, and bigquery client libraries are not available', ''),
)


class _DropMessage(logging.Filter):
  """Rejects records whose message starts with `prefix` and contains `also`."""

  def __init__(self, prefix: str, also: str):
    super().__init__()
    self.prefix = prefix
    self.also = also

  def filter(self, record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not (message.startswith(self.prefix) and self.also in message)


def drop_known_harmless_beam_warnings() -> None:
  """Installs the filters (idempotent). Logger filters see records logged on that logger, which is where Beam
  logs these two (the second through `logging.warning`, i.e. on the root logger)."""
  for name, prefix, also in KNOWN_HARMLESS:
    logger = logging.getLogger(name)
    if not any(isinstance(f, _DropMessage) and f.prefix == prefix for f in logger.filters):
      logger.addFilter(_DropMessage(prefix, also))
