"""Killing a command at a chosen point: it creates a marker file there and waits."""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path


def kill_when_marked(argv: list[str], marker: Path, what: str, timeout: float = 900, **popen):
    """Starts `argv`, waits until it creates `marker`, and kills it with SIGKILL.

    The command creates `marker` where it is to be killed and then waits, so the kill
    lands there however loaded the machine is. Its stderr goes to a file, not a pipe:
    a chatty command would fill a pipe nobody reads and stall before the marker.

    Raises:
      AssertionError: with the end of the command's stderr when it ends first, or
        naming `what` was awaited when `marker` has not appeared after `timeout` s.
    """
    with tempfile.TemporaryFile() as stderr:
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=stderr, **popen)
        try:
            deadline = time.monotonic() + timeout
            while not marker.exists():
                if process.poll() is not None:
                    stderr.seek(0)
                    raise AssertionError(stderr.read().decode(errors="replace")[-3000:])
                assert time.monotonic() < deadline, f"after {timeout:.0f} s: {what} never came"
                time.sleep(0.1)  # polls the condition; the hang guard is the deadline
        finally:
            process.kill()
            process.wait()
