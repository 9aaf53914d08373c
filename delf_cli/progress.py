"""Progress of a step: a live bar on a terminal, plain log lines otherwise."""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

from delf_core.download import FileOutcome
from delf_core.progress import (
    ProgressSnapshot,
    ProgressTracker,
    format_bytes,
    format_duration,
    log_progress,
)

log = logging.getLogger("delf.download")


def _bar(label: str, *columns):
    """A rich bar whose rate and time left come from a ProgressTracker (field `speed`):
    rich's own estimate would count a resumed run's starting point, or files already
    there, as speed, and the warm-up with it."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn

    return Progress(
        TextColumn(label),
        BarColumn(),
        *columns,
        TextColumn("{task.fields[speed]}"),
        console=Console(stderr=True),
    )


def _speed(snapshot: ProgressSnapshot, left: float | None) -> str:
    """`76.9 MB/s, 3 min 5 s left` from the recent rate."""
    if snapshot.rate is None:
        return ""
    rate = (
        f"{format_bytes(snapshot.rate)}/s"
        if snapshot.unit == "bytes"
        else f"{snapshot.rate:.2f} {snapshot.unit}/s"
    )
    if left is None or snapshot.rate <= 0:
        return rate
    return f"{rate}, {format_duration(left / snapshot.rate)} left"


class LogProgress:
    """One log line per finished file, with bytes done of the total and the recent rate."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned = 0
        self._done = 0
        self._received = 0
        self._bytes = ProgressTracker(None, "bytes")

    def files_planned(self, count: int) -> None:
        self._planned = count
        log.info("%d files to fetch or check", count)

    def bytes_planned(self, total: int | None) -> None:
        self._bytes.set_total(total)

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._received += count

    def bytes_settled(self, count: int) -> None:
        with self._lock:
            self._received += count

    def file_finished(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._done += 1
            self._bytes.update(self._received)
            snapshot = self._bytes.snapshot()
            done = self._done
        detail = outcome.error if outcome.status == "failed" else f"{outcome.size / 1e6:.1f} MB"
        if outcome.images:
            detail += f", {outcome.images} images"
        log.info(
            "[%d/%d] %s/%s %s (%s); %s",
            done,
            self._planned,
            outcome.split,
            outcome.name,
            outcome.status,
            detail,
            snapshot.describe(),
        )


class BarProgress:
    """A rich progress bar over bytes, with files done, rate and an estimated time left.

    The byte total is the sum of the files' sizes (their records, or the servers'
    Content-Length); a file already there, or resumed, counts at its size once done.
    """

    def __init__(self) -> None:
        from rich.progress import DownloadColumn

        self._bar = _bar("[bold]download[/bold] {task.fields[files]} files", DownloadColumn())
        self._task = self._bar.add_task("download", total=None, files="0/?", speed="")
        self._lock = threading.Lock()
        self._planned = 0
        self._done = 0
        # The rate counts bytes received only, not files found done or resumed.
        self._received = ProgressTracker(None, "bytes")
        self._bar.start()

    @property
    def total(self) -> float | None:
        return self._bar.tasks[0].total

    @property
    def completed(self) -> float:
        return self._bar.tasks[0].completed

    @property
    def speed(self) -> str:
        """What the bar shows as rate and time left."""
        return self._bar.tasks[0].fields["speed"]

    def files_planned(self, count: int) -> None:
        self._planned = count
        self._bar.update(self._task, files=f"0/{count}")

    def bytes_planned(self, total: int | None) -> None:
        self._bar.update(self._task, total=total)

    def bytes_received(self, count: int) -> None:
        with self._lock:
            self._received.advance(count)
            snapshot = self._received.snapshot()
        self._bar.advance(self._task, count)
        task = self._bar.tasks[0]
        left = None if task.total is None else max(task.total - task.completed, 0)
        self._bar.update(self._task, speed=_speed(snapshot, left))

    def bytes_settled(self, count: int) -> None:
        self._bar.advance(self._task, count)

    def file_finished(self, outcome: FileOutcome) -> None:
        with self._lock:
            self._done += 1
        self._bar.update(self._task, files=f"{self._done}/{self._planned}")
        if outcome.status == "failed":
            self._bar.console.print(f"failed {outcome.split}/{outcome.name}: {outcome.error}")

    def close(self) -> None:
        self._bar.stop()


def make_progress() -> LogProgress | BarProgress:
    return BarProgress() if sys.stderr.isatty() else LogProgress()


class StepProgress:
    """A `(done, total)` callback for a step: a bar of `unit` on a terminal, else log lines
    at the tracker's cadence (every 30 s or 1%), with the recent rate and the ETA.
    """

    def __init__(
        self,
        step: str,
        unit: str,
        bar: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.step = step
        self.unit = unit
        self._clock = clock
        self._lock = threading.Lock()
        self._tracker: ProgressTracker | None = None
        self._bar = None
        if sys.stderr.isatty() if bar is None else bar:
            from rich.progress import MofNCompleteColumn, TextColumn

            self._bar = _bar(f"[bold]{step}[/bold]", MofNCompleteColumn(), TextColumn(unit))
            self._bar.start()

    def __call__(self, done: float, total: float | None) -> None:
        with self._lock:
            if self._tracker is None:  # the first call: where the step starts from
                self._tracker = ProgressTracker(total, self.unit, done=done, clock=self._clock)
                if self._bar is not None:
                    self._task = self._bar.add_task(
                        self.step, total=total, completed=done, speed=""
                    )
                else:
                    log_progress(self.step, self._tracker.snapshot().describe())
                return
            self._tracker.set_total(total)
            due = self._tracker.update(done)
            snapshot = self._tracker.snapshot()
        if self._bar is not None:
            left = None if total is None else total - done
            self._bar.update(self._task, completed=done, total=total, speed=_speed(snapshot, left))
        elif due:
            log_progress(self.step, snapshot.describe())

    @property
    def total(self) -> float | None:
        if self._bar is not None and self._bar.tasks:
            return self._bar.tasks[0].total
        return self._tracker.total if self._tracker else None

    @property
    def completed(self) -> float:
        if self._bar is not None and self._bar.tasks:
            return self._bar.tasks[0].completed
        return self._tracker.done if self._tracker else 0

    @property
    def speed(self) -> str:
        """What the bar shows as rate and time left."""
        return self._bar.tasks[0].fields["speed"] if self._bar and self._bar.tasks else ""

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
