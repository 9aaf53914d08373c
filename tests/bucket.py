"""Small GLDv2-layout buckets for download tests, and a mirror handler that misbehaves."""

from __future__ import annotations

import contextlib
import hashlib
import io
import select
import tarfile
import threading
from collections import defaultdict
from pathlib import Path

from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorHandler


def image_id(split: str, tar: int, k: int) -> str:
    return hashlib.sha1(f"{split}{tar}{k}".encode()).hexdigest()[:16]


def write_tar(path: Path, members: dict[str, bytes]) -> str:
    """Writes a plain tar of regular files and returns its md5."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as archive:
        for name, data in sorted(members.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buffer.getvalue())
    return hashlib.md5(buffer.getvalue()).hexdigest()


def write_md5(root: Path, split: str, index: int, digest: str) -> None:
    path = root / layout.md5_bucket_path(split, index)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(layout.md5_line(digest, layout.tar_name(index)))


def make_bucket(
    root: Path, tars: dict[str, int], images_per_tar: int = 3, image_bytes: int = 2000
) -> dict[str, dict[str, list[str]]]:
    """A bucket with tars of fake JPEG payloads, md5 files and every CSV.

    Returns:
      {split: {tar name: [image ids]}}.
    """
    contents: dict[str, dict[str, list[str]]] = {}
    for split, count in tars.items():
        contents[split] = {}
        for index in range(count):
            ids = [image_id(split, index, k) for k in range(images_per_tar)]
            members = {
                layout.image_relpath(i): b"\xff\xd8"
                + hashlib.sha256(i.encode()).digest() * (image_bytes // 32)
                for i in ids
            }
            digest = write_tar(root / layout.tar_bucket_path(split, index), members)
            write_md5(root, split, index, digest)
            contents[split][layout.tar_name(index)] = ids
    for split in layout.SPLITS:
        for remote in layout.METADATA_FILES[split]:
            path = root / remote.bucket_path
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(",".join(remote.columns) + "\n")  # the header: no rows
    return contents


def served_bytes(root: Path, tars: dict[str, int]) -> int:
    """What a bucket made by make_bucket serves: every CSV and tar, in bytes."""
    paths = [root / r.bucket_path for split in layout.SPLITS for r in layout.METADATA_FILES[split]]
    paths += [root / layout.tar_bucket_path(s, i) for s, n in tars.items() for i in range(n)]
    return sum(path.stat().st_size for path in paths)


class FaultyHandler(MirrorHandler):
    """A mirror handler that follows a per-path script of faults, one per request.

    Faults: "500" (answer HTTP 500), "corrupt" (flip one byte of the body), "drop:N"
    (send N bytes of the body, then close the connection), "crowd:N" (answer only once
    N tar GETs are in flight at once, so a test sees its concurrency whatever the
    machine's speed), "stall" (answer nothing until the client hangs up) and "pause:N"
    (send N bytes of the body, then nothing until the client hangs up). Paths without
    faults are served normally. Every GET is logged with its Range header, and the
    number of GETs in flight is tracked, of all files and of tars alone.

    Waits are for a condition, bounded by WAIT_SECONDS in case it never comes.
    """

    WAIT_SECONDS = 120.0

    faults: dict[str, list[str]] = {}
    requests: list[tuple[str, str | None]] = []
    heads: list[str] = []  # paths asked for with HEAD (their size), kept apart from GETs
    lock = threading.Lock()
    changed = threading.Condition(lock)
    in_flight = 0
    max_in_flight = 0
    tars_in_flight = 0
    max_tars_in_flight = 0

    @classmethod
    def reset(cls, faults: dict[str, list[str]] | None = None) -> None:
        cls.faults = defaultdict(list, {k: list(v) for k, v in (faults or {}).items()})
        cls.requests = []
        cls.heads = []
        cls.in_flight = cls.max_in_flight = 0
        cls.tars_in_flight = cls.max_tars_in_flight = 0

    def do_HEAD(self) -> None:
        with FaultyHandler.lock:
            FaultyHandler.heads.append(self.path.lstrip("/"))
        super().do_HEAD()

    def do_GET(self) -> None:
        path = self.path.lstrip("/")
        cls = FaultyHandler
        is_tar = path.endswith(".tar")
        with cls.lock:
            cls.requests.append((path, self.headers.get("Range")))
            fault = cls.faults[path].pop(0) if cls.faults.get(path) else ""
            cls.in_flight += 1
            cls.max_in_flight = max(cls.max_in_flight, cls.in_flight)
            cls.tars_in_flight += is_tar
            cls.max_tars_in_flight = max(cls.max_tars_in_flight, cls.tars_in_flight)
            cls.changed.notify_all()
        self._fault = fault
        try:
            if fault == "500":
                self.send_error(500, "Internal Server Error")
                return
            if fault.startswith("crowd:"):
                with cls.changed:
                    crowd = int(fault[6:])
                    cls.changed.wait_for(
                        lambda: cls.max_tars_in_flight >= crowd, timeout=cls.WAIT_SECONDS
                    )
            if fault == "stall":
                self._wait_for_hang_up()
                return
            super().do_GET()
        finally:
            with cls.lock:
                cls.in_flight -= 1
                cls.tars_in_flight -= is_tar

    def _wait_for_hang_up(self) -> None:
        """Blocks until the client closes the connection (or WAIT_SECONDS pass)."""
        self.close_connection = True
        ready, _, _ = select.select([self.connection], [], [], self.WAIT_SECONDS)
        if ready:
            with contextlib.suppress(OSError):
                self.connection.recv(1)

    def send_file_range(self, handle, start: int, length: int) -> None:
        fault = self._fault
        if fault == "corrupt":
            handle.seek(start)
            data = bytearray(handle.read(length))
            data[len(data) // 2] ^= 0xFF
            self.wfile.write(bytes(data))
        elif fault.startswith("pause:"):
            handle.seek(start)
            self.wfile.write(handle.read(min(length, int(fault[6:]))))
            self.wfile.flush()
            self._wait_for_hang_up()
        elif fault.startswith("drop:"):
            handle.seek(start)
            self.wfile.write(handle.read(min(length, int(fault[5:]))))
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
        else:
            super().send_file_range(handle, start, length)


def tar_requests() -> list[tuple[str, str | None]]:
    """(path, Range header) of every tar GET so far."""
    return [r for r in FaultyHandler.requests if r[0].endswith(".tar")]
