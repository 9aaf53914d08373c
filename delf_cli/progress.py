"""Progress of a download: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time

from delf_core.download import FileOutcome

log = logging.getLogger("delf.download")


class LogProgress:
    """One log line per finished file, with the overall rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned = 0
        self._done = 0
        self._bytes = 0
        self._began = time.monotonic()

    def files_planned(self, count: int) -> None:
        self._planned = count
        log.info("%d files to fetch or check", count)

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._bytes += count

    def file_finished(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._done += 1
            rate = self._bytes / max(time.monotonic() - self._began, 1e-9) / 1e6
            done = self._done
        detail = outcome.error if outcome.status == "failed" else f"{outcome.size / 1e6:.1f} MB"
        if outcome.images:
            detail += f", {outcome.images} images"
        log.info(
            "[%d/%d] %s/%s %s (%s); %.1f MB/s",
            done,
            self._planned,
            outcome.split,
            outcome.name,
            outcome.status,
            detail,
            rate,
        )


class BarProgress:
    """A rich progress bar over bytes, with files done, rate and an estimated time left.

    Tar sizes are not known up front, so the byte total is re-estimated as files
    finish: bytes so far plus the mean size of finished files times those left.
    """

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._bar = Progress(
            TextColumn("[bold]download[/bold] {task.fields[files]} files"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
        )
        self._task = self._bar.add_task("download", total=None, files="0/?")
        self._lock = threading.Lock()
        self._planned = 0
        self._done = 0
        self._received = 0
        self._finished_bytes = 0
        self._bar.start()

    def files_planned(self, count: int) -> None:
        self._planned = count
        self._bar.update(self._task, files=f"0/{count}")

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._received += count
        self._bar.advance(self._task, count)

    def file_finished(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._done += 1
            self._finished_bytes += outcome.size
            left = self._planned - self._done
            estimate = self._received + left * self._finished_bytes / self._done
        self._bar.update(self._task, total=estimate, files=f"{self._done}/{self._planned}")
        if outcome.status == "failed":
            self._bar.console.print(f"failed {outcome.split}/{outcome.name}: {outcome.error}")

    def close(self) -> None:
        self._bar.stop()


def make_progress() -> LogProgress | BarProgress:
    return BarProgress() if sys.stderr.isatty() else LogProgress()
