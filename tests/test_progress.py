"""ProgressTracker: a recent rate without the warm-up, an honest ETA, and when to report."""

from __future__ import annotations

import pytest

from delf_core.progress import ProgressCadence, ProgressSnapshot, ProgressTracker, format_duration


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_eta_leaves_out_the_slow_first_update():
    # 40 steps: the first 5 take 300 s (graph tracing), then 1 step per second.
    clock = Clock()
    tracker = ProgressTracker(40, "steps", clock=clock)
    clock.now += 300
    tracker.update(5)
    for step in range(6, 11):
        clock.now += 1
        tracker.update(step)
    snapshot = tracker.snapshot()
    assert snapshot.rate == pytest.approx(1.0)
    assert snapshot.eta_seconds == pytest.approx(30.0)
    # The mean since the start would have said about 30 minutes.
    assert "ETA 30 s" in snapshot.describe()


def test_rate_follows_the_recent_window_not_the_mean():
    clock = Clock()
    cadence = ProgressCadence(window_seconds=60)
    tracker = ProgressTracker(100_000, "records", clock=clock, cadence=cadence)
    done = 0
    for _ in range(120):  # two minutes at 100 records/s
        clock.now += 1
        done += 100
        tracker.update(done)
    for _ in range(120):  # then two minutes at 10 records/s
        clock.now += 1
        done += 10
        tracker.update(done)
    # The window holds the last minute (and the point just before it), not the mean of 55/s.
    assert tracker.rate() == pytest.approx(10.0, rel=0.05)


def test_a_stalled_step_shows_its_rate_falling():
    clock = Clock()
    tracker = ProgressTracker(100, "files", clock=clock)
    for done in range(1, 12):
        clock.now += 1
        tracker.update(done)
    assert tracker.rate() == pytest.approx(1.0)
    clock.now += 10  # nothing arrives for 10 s
    assert tracker.rate() == pytest.approx(0.5)


def test_no_rate_before_two_points_after_the_warmup():
    clock = Clock()
    tracker = ProgressTracker(10, "files", clock=clock, cadence=ProgressCadence(warmup_updates=2))
    clock.now += 5
    tracker.update(1)
    clock.now += 5
    tracker.update(2)
    assert tracker.rate() is None
    assert "rate not measured yet" in tracker.snapshot().describe()
    clock.now += 2
    tracker.update(4)
    assert tracker.rate() == pytest.approx(1.0)


def test_without_warmup_the_start_counts():
    clock = Clock()
    tracker = ProgressTracker(10, "files", clock=clock, cadence=ProgressCadence(warmup_updates=0))
    clock.now += 4
    tracker.update(2)
    assert tracker.rate() == pytest.approx(0.5)


def test_reports_every_percent_or_every_30_seconds_whichever_first():
    clock = Clock()
    tracker = ProgressTracker(1000, "records", clock=clock)
    assert tracker.update(1)  # the first update shows the run has started
    clock.now += 1
    assert not tracker.update(5)
    clock.now += 1
    assert tracker.update(11)  # 1% of 1000 since the last report
    clock.now += 29
    assert not tracker.update(12)
    clock.now += 1
    assert tracker.update(13)  # 30 s since the last report
    clock.now += 1
    assert tracker.update(1000)  # the end is always shown


def test_cadence_is_configurable():
    clock = Clock()
    cadence = ProgressCadence(every_seconds=5, every_fraction=0.5)
    tracker = ProgressTracker(100, "steps", clock=clock, cadence=cadence)
    assert tracker.update(1)
    clock.now += 4
    assert not tracker.update(40)
    assert tracker.update(51)
    clock.now += 5
    assert tracker.update(52)


def test_memory_stays_bounded_with_very_frequent_updates():
    clock = Clock()
    tracker = ProgressTracker(None, "bytes", clock=clock)
    for done in range(100_000):
        clock.now += 0.001
        tracker.update(done)
    assert len(tracker._samples) <= 102
    assert tracker.rate() == pytest.approx(1000.0, rel=0.01)
    assert tracker.snapshot().eta_seconds is None  # no total, no ETA
    assert tracker.snapshot().describe() == "100.0 kB/?, 1.0 kB/s"


def test_describe_shows_done_total_percent_rate_and_eta():
    text = ProgressSnapshot(1200, 5000, 31.5, "records").describe()
    assert text == "1,200/5,000 records (24.0%), 31.5 records/s, ETA 2 min 1 s"


def test_bytes_read_as_kb_mb_gb():
    text = ProgressSnapshot(1_200_000_000, 3_400_000_000, 76_900_000, "bytes").describe()
    assert text == "1.2 GB/3.4 GB (35.3%), 76.9 MB/s, ETA 29 s"


@pytest.mark.parametrize(
    "seconds, shown",
    [(0.4, "0 s"), (59, "59 s"), (725, "12 min 5 s"), (12_000, "3 h 20 min"), (187_200, "2 d 4 h")],
)
def test_format_duration(seconds, shown):
    assert format_duration(seconds) == shown


def test_a_bad_cadence_is_refused():
    with pytest.raises(ValueError, match="every_fraction"):
        ProgressTracker(10, "steps", cadence=ProgressCadence(every_fraction=0))
