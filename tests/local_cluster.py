"""Real multi-process clusters on 127.0.0.1 for tests: free ports, bounded waits, and cleanup of only our processes.

Each process is started in a session of its own, so that stopping it also stops the children it started (a Dask
worker's threads, a Beam worker) and nothing else; everything is stopped when the `ProcessGroup` closes, even when
the test failed half-way. Output goes to a log file per process, which the failure messages quote: a hung or
crashed worker must be diagnosable from the test report alone.
"""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_ports(count: int) -> List[int]:
  """`count` distinct TCP ports free on 127.0.0.1 right now.

  All sockets stay open until every port is picked, so the ports differ; another program could still take one
  before the caller binds it, which on a test machine is rare enough to accept.
  """
  with contextlib.ExitStack() as stack:
    ports = []
    for _ in range(count):
      sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
      sock.bind(('127.0.0.1', 0))
      ports.append(sock.getsockname()[1])
    return ports


def user_env(**extra: str) -> Dict[str, str]:
  """The environment of a user's shell in the repository: the packages importable, no TensorFlow log noise.

  TF_CONFIG of the test process (if any) is dropped, so that a process only joins the cluster it is given.
  """
  env = {k: v for k, v in os.environ.items() if k != 'TF_CONFIG'}
  env['PYTHONPATH'] = os.pathsep.join(p for p in (REPO_ROOT, os.environ.get('PYTHONPATH')) if p)
  env.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
  env.update(extra)
  return env


class ProcessGroup:
  """Processes started by one test; `close` (or leaving the `with` block) stops those still running."""

  def __init__(self, log_dir: str):
    self._log_dir = log_dir
    self._processes: Dict[str, subprocess.Popen] = {}
    self._logs: Dict[str, str] = {}
    os.makedirs(log_dir, exist_ok=True)

  def __enter__(self) -> 'ProcessGroup':
    return self

  def __exit__(self, *unused_exc) -> None:
    self.close()

  def start(self, name: str, command: Sequence[str], env: Optional[Dict[str, str]] = None,
            cwd: str = REPO_ROOT) -> subprocess.Popen:
    """Starts `command` in a new session with its output in `<log_dir>/<name>.log`."""
    path = os.path.join(self._log_dir, f'{name}.log')
    with open(path, 'wb') as log:
      process = subprocess.Popen(list(command), cwd=cwd, env=env or user_env(), stdout=log,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    self._processes[name] = process
    self._logs[name] = path
    return process

  def log(self, name: str, tail: int = 4000) -> str:
    """The last `tail` characters of process `name`'s output."""
    with open(self._logs[name], errors='replace') as f:
      return f.read()[-tail:]

  def wait(self, name: str, timeout: float) -> int:
    """Waits for `name` to exit; on timeout stops it and raises AssertionError quoting its log."""
    try:
      return self._processes[name].wait(timeout=timeout)
    except subprocess.TimeoutExpired:
      self._stop(self._processes[name])
      raise AssertionError(f'{name} did not finish within {timeout:.0f} s; its log ends with:\n'
                           f'{self.log(name)}') from None

  def wait_all(self, names: Sequence[str], timeout: float) -> Dict[str, int]:
    """Exit codes of `names`, all waited for within one shared `timeout`."""
    deadline = time.monotonic() + timeout
    return {name: self.wait(name, max(1.0, deadline - time.monotonic())) for name in names}

  def wait_for(self, condition: Callable[[], bool], what: str, timeout: float, watch: Sequence[str] = ()) -> None:
    """Polls `condition` until it holds; fails early when a process of `watch` died, quoting its log."""
    deadline = time.monotonic() + timeout
    while not condition():
      for name in watch:
        if self._processes[name].poll() is not None:
          raise AssertionError(f'{name} exited ({self._processes[name].returncode}) while waiting for {what}; '
                               f'its log ends with:\n{self.log(name)}')
      if time.monotonic() > deadline:
        logs = '\n'.join(f'--- {name}:\n{self.log(name, 1500)}' for name in watch)
        raise AssertionError(f'timed out after {timeout:.0f} s waiting for {what}\n{logs}')
      time.sleep(0.2)

  def close(self) -> None:
    for process in self._processes.values():
      self._stop(process)

  @staticmethod
  def _stop(process: subprocess.Popen) -> None:
    """SIGTERM to the process's own session, SIGKILL after 10 s; only processes this group started."""
    if process.poll() is not None:
      return
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
      try:
        os.killpg(process.pid, sig)  # The session started for this process: it and its children only.
      except ProcessLookupError:
        return
      try:
        process.wait(timeout=grace)
        return
      except subprocess.TimeoutExpired:
        continue


def python_command(*args: str) -> List[str]:
  """`python <args>` with this interpreter (the project's virtualenv)."""
  return [sys.executable, *args]
