"""The output folder's lease: one holder at a time, expiry, take-over by the same owner."""

from __future__ import annotations

import time

import pytest

from delf_core.output_lease import LEASE_FILE, OutputInUseError, OutputLease


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_live_lease_of_another_owner_is_refused_naming_it_and_the_folder(tmp_path):
    clock = Clock()
    OutputLease(str(tmp_path), "run-a", "brave-fox", 60, clock).acquire()
    clock.now += 59
    with pytest.raises(OutputInUseError) as refused:
        OutputLease(str(tmp_path), "run-b", "calm-owl", 60, clock).acquire()
    message = str(refused.value)
    assert "\n" not in message
    assert f"output_root {tmp_path} is in use by run 'brave-fox' (run-a)" in message
    assert OutputLease(str(tmp_path), "x", "x").holder().owner == "run-a"


def test_an_expired_lease_is_taken_over(tmp_path):
    clock = Clock()
    OutputLease(str(tmp_path), "run-a", "brave-fox", 60, clock).acquire()
    clock.now += 61
    previous = OutputLease(str(tmp_path), "run-b", "calm-owl", 60, clock).acquire()
    assert previous.owner == "run-a"
    assert OutputLease(str(tmp_path), "x", "x").holder().owner == "run-b"


def test_the_same_owner_takes_its_live_lease_back(tmp_path):
    clock = Clock()
    OutputLease(str(tmp_path), "run-a", "brave-fox", 60, clock).acquire()
    clock.now += 5
    previous = OutputLease(str(tmp_path), "run-a", "brave-fox", 60, clock).acquire()
    assert previous.owner == "run-a" and previous.renewed_at == 1000.0
    assert OutputLease(str(tmp_path), "x", "x").holder().renewed_at == 1005.0


def test_a_lost_lease_is_not_renewed_and_not_released(tmp_path):
    clock = Clock()
    first = OutputLease(str(tmp_path), "run-a", "brave-fox", 60, clock)
    first.acquire()
    clock.now += 61
    OutputLease(str(tmp_path), "run-b", "calm-owl", 60, clock).acquire()
    assert not first.renew()
    first.release()
    assert OutputLease(str(tmp_path), "x", "x").holder().owner == "run-b"


def test_as_a_context_it_renews_while_held_and_is_given_back(tmp_path):
    with OutputLease(str(tmp_path / "out"), "run-a", "brave-fox", lease_seconds=0.2) as lease:
        first = lease.holder().renewed_at
        deadline = time.monotonic() + 60
        while lease.holder().renewed_at == first:
            assert time.monotonic() < deadline, "the lease was never renewed"
            time.sleep(0.01)  # polls the renewer thread
    assert not (tmp_path / "out" / LEASE_FILE).exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == []


def test_a_memory_url_holds_a_lease_too():
    root = "memory://leases/run"
    OutputLease(root, "run-a", "brave-fox").acquire()
    with pytest.raises(OutputInUseError, match="brave-fox"):
        OutputLease(root, "run-b", "calm-owl").acquire()
    OutputLease(root, "run-a", "brave-fox").release()
    assert OutputLease(root, "run-b", "calm-owl").acquire() is None
