"""Killing a command at a chosen point: it creates a marker file there and waits."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def kill_when_marked(argv: list[str], marker: Path, what: str, timeout: float = 900, **popen):
    """Starts `argv`, waits until it creates `marker`, and kills it with SIGKILL.

    The command creates `marker` where it is to be killed and then waits, so the kill
    lands there however loaded the machine is.

    Raises:
      AssertionError: with the end of the command's stderr when it ends first, or
        naming `what` was awaited when `marker` has not appeared after `timeout` s.
    """
    process = subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, **popen
    )
    try:
        deadline = time.monotonic() + timeout
        while not marker.exists():
            assert process.poll() is None, process.communicate()[1][-3000:]
            assert time.monotonic() < deadline, f"after {timeout:.0f} s: {what} never came"
            time.sleep(0.1)  # polls the condition; the hang guard is the deadline
    finally:
        process.kill()
        process.communicate()
