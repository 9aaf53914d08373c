"""Unpacking a tar while its bytes arrive, into a private folder published once verified."""

from __future__ import annotations

import queue
import shutil
import tarfile
import threading
from pathlib import Path

from delf_core.download.members import (
    DEFAULT_LIMITS,
    MemberCheck,
    SafeTarInfo,
    UnpackLimits,
    UnpackResult,
)
from delf_core.download.staging import commit_staged, write_staged

# Chunks waiting to be unpacked; when unpacking lags, the download waits (about 16 MB).
_QUEUE_CHUNKS = 64


class _QueueReader:
    """A read-only file over a queue of byte chunks; None marks the end."""

    def __init__(self, chunks: queue.Queue) -> None:
        self._chunks = chunks
        self._buffer = bytearray()
        self.ended = False

    def read(self, size: int = -1) -> bytes:
        while not self.ended and (size < 0 or len(self._buffer) < size):
            chunk = self._chunks.get()
            if chunk is None:
                self.ended = True
            else:
                self._buffer += chunk
        size = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        out = bytes(self._buffer[:size])
        del self._buffer[:size]
        return out


class StreamingUnpacker:
    """Unpacks a tar into `staging` as it downloads, so unpacking overlaps the transfer.

    Feed it every chunk with its offset (it is the `tee` of `fetch_file`). Each member is
    checked (see `MemberCheck`) before a byte of it is written, so a sparse member or a
    tar beyond the limits stops the writing at once. Nothing reaches the split folder
    until `commit`, which the caller runs only once the md5 matches. A gap in the
    offsets (a resumed or restarted download) or any error while unpacking makes
    `finish` return False; the caller then unpacks the verified file instead, which
    reports a hostile member with one line.
    """

    def __init__(self, staging: Path, tar_name: str, limits: UnpackLimits = DEFAULT_LIMITS) -> None:
        self.staging = staging
        self.tar_name = tar_name
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._check = MemberCheck(tar_name, limits)
        self._chunks: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._fed = 0
        self._broken = False
        self._closed = False
        self._error: BaseException | None = None
        self._files: list[str] = []
        self._thread = threading.Thread(target=self._unpack, daemon=True)
        self._thread.start()

    @property
    def error(self) -> BaseException | None:
        """What stopped the unpacking, once `finish` has returned."""
        return self._error

    def __call__(self, offset: int, chunk: bytes) -> None:
        if self._broken or self._closed:
            return
        if offset != self._fed:
            self._broken = True
            self._end_stream()
            return
        self._fed += len(chunk)
        self._chunks.put(bytes(chunk))

    def finish(self, total_size: int) -> bool:
        """Ends the stream; True if all `total_size` bytes went through and unpacked cleanly."""
        self._end_stream()
        self._thread.join()
        return not self._broken and self._error is None and self._fed == total_size

    def commit(self, split_dir: Path) -> UnpackResult:
        """Moves the unpacked images into `split_dir` (see `commit_staged`).

        Raises:
          DownloadError: when something in the split is in the way; nothing moved then.
        """
        try:
            commit_staged(self.staging, self._files, split_dir, self.tar_name)
        finally:
            self.discard()
        return self._check.result(len(self._files))

    def discard(self) -> None:
        """Stops unpacking and removes the staging folder."""
        self._end_stream()
        self._thread.join()
        shutil.rmtree(self.staging, ignore_errors=True)

    def _end_stream(self) -> None:
        if not self._closed:
            self._closed = True
            self._chunks.put(None)

    def _unpack(self) -> None:
        reader = _QueueReader(self._chunks)
        made: set[Path] = set()
        try:
            with tarfile.open(fileobj=reader, mode="r|", tarinfo=SafeTarInfo) as archive:
                for member in archive:
                    relative = self._check.check(member)
                    if relative is None:
                        continue
                    target = self.staging / relative
                    if target.parent not in made:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        made.add(target.parent)
                    write_staged(archive.extractfile(member), target)
                    self._files.append(relative)
        except BaseException as error:  # noqa: BLE001 - reported through finish()
            self._error = error
        finally:
            # Keep taking chunks until the end, so the downloading thread never blocks.
            while not reader.ended:
                reader.ended = self._chunks.get() is None
