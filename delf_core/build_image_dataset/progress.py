"""How far a running build is: each shard's writer keeps its count in the work folder.

A Beam job's counters reach the launcher only when the job ends on local runners, so
the writers keep a small file per shard (`<work folder>/progress/<shard>.txt`, the
images done so far) that the launcher sums while the job runs. The work folder sits
under the output folder, where every worker writes already: a local folder for the
local runners, `gs://` on Dataflow. A retried bundle rewrites its shard's file from
the start, so a count is never added twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from delf_core import storage

PROGRESS_FOLDER = "progress"


def record_shard_progress(work_folder: str, shard_name: str, images_done: int) -> None:
    fs, folder = storage.resolve(storage.join(work_folder, PROGRESS_FOLDER))
    storage.write_bytes(fs, storage.join(folder, f"{shard_name}.txt"), str(images_done).encode())


def images_done(work_folder: str) -> int:
    """The images written or left out so far, over every shard that has started."""
    fs, folder = storage.resolve(storage.join(work_folder, PROGRESS_FOLDER))
    fs.invalidate_cache(folder)  # object stores cache listings; workers write here
    try:
        listed = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return 0
    total = 0
    for path in listed:
        if path.rsplit("/", 1)[-1].startswith("."):  # being written
            continue
        try:
            total += int(fs.cat_file(path).decode() or 0)
        except (FileNotFoundError, ValueError):  # replaced while read: the next poll has it
            continue
    return total


class ShardProgress:
    """Keeps one shard's count in the work folder, at most every `every_seconds`."""

    def __init__(
        self,
        work_folder: str,
        shard_name: str,
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._work_folder = work_folder
        self._shard_name = shard_name
        self._every_seconds = every_seconds
        self._clock = clock
        self._written_at = clock()
        self._done = 0
        record_shard_progress(work_folder, shard_name, 0)  # a retried shard starts over

    def image_done(self) -> None:
        self._done += 1
        if self._clock() - self._written_at >= self._every_seconds:
            self.flush()

    def flush(self) -> None:
        record_shard_progress(self._work_folder, self._shard_name, self._done)
        self._written_at = self._clock()
