"""Progress of a long step: units done of a total, a recent rate, an ETA, and when to report."""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ProgressCadence:
    """How often progress is shown, and over what span its rate is measured.

    Args:
      every_seconds: report at least this often while units keep coming.
      every_fraction: and whenever this fraction of the total has been done since the
        last report (0.01: every 1%), whichever comes first.
      window_seconds: the rate is measured over about this much recent time, so a
        run that speeds up or slows down shows its present rate, not its mean.
      warmup_updates: updates left out of the rate at the start (graph tracing, a
        first bundle, connection set-up are slower than the steady state).
    """

    every_seconds: float = 30.0
    every_fraction: float = 0.01
    window_seconds: float = 60.0
    warmup_updates: int = 1

    def validate(self) -> None:
        if self.every_seconds <= 0 or self.window_seconds <= 0:
            raise ValueError("progress intervals must be positive")
        if not 0 < self.every_fraction <= 1:
            raise ValueError("progress every_fraction must be in (0, 1]")
        if self.warmup_updates < 0:
            raise ValueError("progress warmup_updates must be >= 0")


@dataclasses.dataclass(frozen=True)
class ProgressSnapshot:
    done: float
    total: float | None
    rate: float | None  # units per second over the recent window; None until measured
    unit: str

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None
        return min(self.done / self.total, 1.0)

    @property
    def eta_seconds(self) -> float | None:
        if self.total is None or not self.rate:
            return None
        return max(self.total - self.done, 0.0) / self.rate

    def describe(self) -> str:
        """`1,200/5,000 records (24.0%), 31.5 records/s, ETA 2 min 1 s`; bytes in kB, MB, GB."""
        if self.unit == "bytes":
            total = "?" if self.total is None else format_bytes(self.total)
            text = f"{format_bytes(self.done)}/{total}"
        else:
            total = "?" if self.total is None else f"{self.total:,.0f}"
            text = f"{self.done:,.0f}/{total} {self.unit}"
        if self.fraction is not None:
            text += f" ({100 * self.fraction:.1f}%)"
        if self.rate is None:
            return text + ", rate not measured yet"
        if self.unit == "bytes":
            text += f", {format_bytes(self.rate)}/s"
        else:
            text += f", {_rate(self.rate)} {self.unit}/s"
        eta = self.eta_seconds
        return text + (f", ETA {format_duration(eta)}" if eta is not None else "")


class ProgressTracker:
    """Counts units done of a total; measures a recent rate; says when a report is due.

    Not thread-safe: callers that update from several threads hold their own lock.
    """

    def __init__(
        self,
        total: float | None,
        unit: str,
        *,
        done: float = 0.0,
        cadence: ProgressCadence = ProgressCadence(),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        cadence.validate()
        self.total = total
        self.unit = unit
        self.done = done
        self._cadence = cadence
        self._clock = clock
        self._updates = 0
        # (time, done) points after the warm-up, about 100 per window at most.
        self._samples: collections.deque[tuple[float, float]] = collections.deque()
        self._reported_at: float | None = None
        self._reported_done = done
        if cadence.warmup_updates == 0:  # the starting point counts
            self._samples.append((clock(), done))

    def set_total(self, total: float | None) -> None:
        self.total = total

    def advance(self, count: float) -> bool:
        return self.update(self.done + count)

    def update(self, done: float) -> bool:
        """Records that `done` units are done; True when a report is due now.

        A report is due at the first update, when the last report is `every_seconds`
        old, when `every_fraction` of the total was done since it, and at the end.
        The caller reports then; the tracker counts the report as made.
        """
        now = self._clock()
        self.done = done
        self._updates += 1
        if self._updates >= self._cadence.warmup_updates:
            self._add_sample(now, done)
        due = (
            self._reported_at is None
            or now - self._reported_at >= self._cadence.every_seconds
            or (self.total is not None and done >= self.total)
            or (
                bool(self.total)
                and done - self._reported_done >= self._cadence.every_fraction * self.total
            )
        )
        if due:
            self._reported_at, self._reported_done = now, done
        return due

    def _add_sample(self, now: float, done: float) -> None:
        samples = self._samples
        spacing = self._cadence.window_seconds / 100
        # Updates closer together than `spacing` move the newest point instead of adding
        # one, so memory stays bounded however often units arrive.
        if len(samples) >= 2 and now - samples[-2][0] < spacing:
            samples[-1] = (now, done)
        else:
            samples.append((now, done))
        # The oldest point kept is the last one at or before the window's start.
        while len(samples) > 2 and samples[1][0] <= now - self._cadence.window_seconds:
            samples.popleft()

    def rate(self) -> float | None:
        """Units per second over the recent window, warm-up excluded; None until known.

        Measured up to now, not to the last update: a step that stalls shows its rate
        falling rather than the speed it had before.
        """
        if len(self._samples) < 2:
            return None
        (t0, d0), (_, d1) = self._samples[0], self._samples[-1]
        elapsed = max(self._clock(), self._samples[-1][0]) - t0
        return (d1 - d0) / elapsed if elapsed > 0 else None

    def snapshot(self) -> ProgressSnapshot:
        return ProgressSnapshot(self.done, self.total, self.rate(), self.unit)


def log_progress(step: str, description: str) -> None:
    """The progress line of `step`, logged where a run's log and the terminal show it."""
    log.info("%s: %s", step, description)


def format_duration(seconds: float) -> str:
    """`45 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`: coarse enough to read at a glance."""
    seconds = max(int(round(seconds)), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def format_bytes(size: float) -> str:
    """`512 B`, `3.4 MB`, `1.2 GB` (powers of 1000, as the bar and cloud consoles show them)."""
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def _rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:.2f}" if rate < 1 else f"{rate:.1f}"
