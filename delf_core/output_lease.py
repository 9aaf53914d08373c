"""A lease on an output folder: one run writes it at a time, and a dead run's lease expires."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from delf_core import storage

log = logging.getLogger(__name__)
LEASE_FILE = ".output_lease.json"


class OutputInUseError(RuntimeError):
    """Another live run holds the folder's lease."""


@dataclasses.dataclass(frozen=True)
class Holder:
    """Who holds a lease: an owner id, a name for people, and when it was last renewed."""

    owner: str
    name: str
    renewed_at: float
    lease_seconds: float

    def expired(self, now: float) -> bool:
        return now - self.renewed_at > self.lease_seconds


class OutputLease:
    """Holds `<root>/.output_lease.json` while a run writes under `root`.

    Taken when the file is absent, expired (its holder stopped renewing: killed, or its
    machine lost) or held by the same owner (the same run resumed after a crash). As a
    context manager it renews the lease every quarter lease on a daemon thread and
    gives it back on exit. Locally, taking a lease is atomic (an exclusive create; an
    expired lease is renamed away first, which only one taker can do). An object store
    (gs://) has neither, so there two runs starting within the same moment may both
    take it; each renewal then finds the loss and logs it.

    Args:
      root: the output folder, a local path or URL.
      owner: the holder's id (a flow run id).
      name: the holder's name, for the refusal message.
      lease_seconds: how long a lease outlives its last renewal.
      clock: seconds since the epoch (the lease is read on other machines too).
    """

    def __init__(
        self,
        root: str,
        owner: str,
        name: str,
        lease_seconds: float = 120.0,
        clock: Callable[[], float] = time.time,
    ):
        self.root = root
        self.owner, self.name, self.lease_seconds = owner, name, lease_seconds
        self._clock = clock
        self._fs, root_path = storage.resolve(root)
        self._path = storage.join(root_path, LEASE_FILE)
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self.previous: Holder | None = None  # whom the context took the lease over from

    def holder(self) -> Holder | None:
        """The lease's holder as recorded, or None when nobody holds it."""
        record = storage.read_json(self._fs, self._path)
        return None if record is None else Holder(**record)

    def acquire(self) -> Holder | None:
        """Takes the lease; returns the holder it took over from (expired or ours), if any.

        Raises:
          OutputInUseError: naming the other holder and the folder, when its lease is live.
        """
        for _ in range(3):  # a taker racing us leaves a fresh lease, refused next time
            current = self.holder()
            if current is not None:
                self._refuse_if_live(current)
                if not self._set_aside(current):
                    continue
            if self._create():
                return current
        raise OutputInUseError(
            f"{self.root}: could not take the output lease; another run keeps taking it"
        )

    def renew(self) -> bool:
        """Renews the lease if still ours; False (and an error logged) when it was lost."""
        current = self.holder()
        if current is not None and current.owner != self.owner:
            log.error(
                "%s: the output lease was taken by %s (%s)", self.root, current.name, current.owner
            )
            return False
        storage.write_json(self._fs, self._path, self._record())
        return True

    def release(self) -> None:
        """Gives the lease back, if it is still ours."""
        current = self.holder()
        if current is not None and current.owner == self.owner:
            with contextlib.suppress(FileNotFoundError):
                self._fs.rm(self._path)

    def __enter__(self) -> OutputLease:
        self.previous = self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._keep_renewing, daemon=True)
        self._renewer.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        self.release()

    def _keep_renewing(self) -> None:
        while not self._stop.wait(self.lease_seconds / 4):
            try:
                if not self.renew():
                    return
            except OSError:  # a storage hiccup: the next renewal may pass
                log.warning("%s: could not renew the output lease", self.root, exc_info=True)

    def _refuse_if_live(self, current: Holder) -> None:
        now = self._clock()
        if current.owner == self.owner or current.expired(now):
            return
        raise OutputInUseError(
            f"output_root {self.root} is in use by run {current.name!r} ({current.owner}), "
            f"renewed {now - current.renewed_at:.0f} s ago: wait for it to end or cancel it "
            f"(a dead run's lease expires {current.lease_seconds:.0f} s after its last renewal)"
        )

    def _record(self) -> dict[str, Any]:
        return dataclasses.asdict(Holder(self.owner, self.name, self._clock(), self.lease_seconds))

    def _set_aside(self, current: Holder) -> bool:
        """Moves the lease `current` away; False when another taker came first."""
        if not storage.is_local(self._fs):
            return True  # overwritten by _create
        aside = f"{self._path}.{self.owner}.old"
        try:
            os.replace(self._path, aside)
        except FileNotFoundError:
            return False
        took_ours = storage.read_json(self._fs, aside) == dataclasses.asdict(current)
        if not took_ours:  # another taker's fresh lease: put it back
            with contextlib.suppress(FileExistsError):
                os.link(aside, self._path)
        os.remove(aside)
        return took_ours

    def _create(self) -> bool:
        """Writes our lease; False when another taker's lease appeared first."""
        if not storage.is_local(self._fs):
            storage.write_json(self._fs, self._path, self._record())
            return self.holder().owner == self.owner
        self._fs.makedirs(os.path.dirname(self._path), exist_ok=True)
        tmp = f"{self._path}.{self.owner}.new"
        storage.write_json(self._fs, tmp, self._record())
        try:
            os.link(tmp, self._path)  # fails if the name exists: an exclusive create, whole
        except FileExistsError:
            return False
        finally:
            os.remove(tmp)
        return True
