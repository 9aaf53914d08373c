"""Unpacking a tar while its bytes arrive, into a private folder published once verified."""

from __future__ import annotations

import contextlib
import os
import posixpath
import queue
import shutil
import tarfile
import threading
from collections import defaultdict
from pathlib import Path

from delf_core.download.untar import check_member

_COPY_BUFFER = 1 << 20
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

    Feed it every chunk with its offset (it is the `tee` of `fetch_file`). Nothing reaches
    the split folder until `commit`, which the caller runs only once the md5 matches.
    A gap in the offsets (a resumed or restarted download) or any error while unpacking
    makes `finish` return False; the caller then unpacks the verified file instead, which
    also reports a hostile member properly.
    """

    def __init__(self, staging: Path, tar_name: str) -> None:
        self.staging = staging
        self.tar_name = tar_name
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        self._chunks: queue.Queue = queue.Queue(maxsize=_QUEUE_CHUNKS)
        self._fed = 0
        self._broken = False
        self._closed = False
        self._error: BaseException | None = None
        self._files: list[str] = []
        self._thread = threading.Thread(target=self._unpack, daemon=True)
        self._thread.start()

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

    def commit(self, split_dir: Path) -> int:
        """Moves the unpacked files into `split_dir`; returns the number of `.jpg` files.

        A folder new to the split moves in one rename; into an existing one, file by file.
        """
        by_folder: dict[str, list[str]] = defaultdict(list)
        for relative in self._files:
            folder, _, name = relative.rpartition("/")
            by_folder[folder].append(name)
        for folder, names in by_folder.items():
            final = split_dir / folder
            if folder and not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                with contextlib.suppress(OSError):  # another tar made it meanwhile
                    os.rename(self.staging / folder, final)
                    continue
            final.mkdir(parents=True, exist_ok=True)
            for name in names:
                os.replace(self.staging / folder / name, final / name)
        self.discard()
        return sum(relative.endswith(".jpg") for relative in self._files)

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
            with tarfile.open(fileobj=reader, mode="r|") as archive:
                for member in archive:
                    if not check_member(member, self.tar_name):
                        continue
                    relative = posixpath.normpath(member.name)
                    target = self.staging / relative
                    if target.parent not in made:
                        target.parent.mkdir(parents=True, exist_ok=True)
                        made.add(target.parent)
                    source = archive.extractfile(member)
                    with open(target, "wb") as out:
                        shutil.copyfileobj(source, out, _COPY_BUFFER)
                    self._files.append(relative)
        except BaseException as error:  # noqa: BLE001 - reported through finish()
            self._error = error
        finally:
            # Keep taking chunks until the end, so the downloading thread never blocks.
            while not reader.ended:
                reader.ended = self._chunks.get() is None
