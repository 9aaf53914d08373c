"""Paths are URLs: fsspec access with whole-or-nothing writes (DESIGN.md rules 4 and 5)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from typing import IO, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem


def resolve(url: str) -> tuple[fsspec.AbstractFileSystem, str]:
    """The filesystem and path inside it for a local path or any fsspec URL."""
    fs, path = fsspec.core.url_to_fs(url)
    return fs, path


def exists(url: str) -> bool:
    """Whether a local path or URL names an existing file or folder."""
    fs, path = resolve(url)
    return fs.exists(path)


def is_local(fs: fsspec.AbstractFileSystem) -> bool:
    return isinstance(fs, LocalFileSystem)


def url_of(fs: fsspec.AbstractFileSystem, path: str) -> str:
    """The URL a path of `fs` is known by elsewhere: the plain path for local files."""
    return path if is_local(fs) else fs.unstrip_protocol(path)


def join(base: str, *parts: str) -> str:
    """Joins with '/', keeping a URL scheme intact (os.path.join would break gs://)."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def fsync_dir(path: str | os.PathLike) -> None:
    """Flushes a local folder's entries (renames into it) to disk.

    Some filesystems cannot open or sync a folder; those keep what the kernel gives.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: str | os.PathLike) -> None:
    """Flushes a finished local file's bytes to disk."""
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def durable_replace(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Renames a finished local file or folder over `dst` so that it survives a power cut.

    The bytes (of every file, for a folder) are synced before the rename, since a rename
    alone may reach the disk before the data it names, and the parent folder after it,
    so the new entry does too.
    """
    if os.path.isdir(src):
        for folder, _, files in os.walk(src):
            for name in files:
                fsync_file(os.path.join(folder, name))
            fsync_dir(folder)
    else:
        fsync_file(src)
    os.replace(src, dst)
    fsync_dir(os.path.dirname(os.path.abspath(dst)))


@contextlib.contextmanager
def atomic_open(fs: fsspec.AbstractFileSystem, path: str) -> Iterator[IO[bytes]]:
    """Opens `path` for binary writing so that it appears whole or not at all.

    Locally the bytes go to a hidden temporary name in the same folder, synced to disk
    and renamed on success, so a kill or a power cut leaves the old file or the new one.
    Object stores (gs://, memory://) publish an object only when its upload closes, so
    there the final name is written directly.
    """
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if not is_local(fs):
        with fs.open(path, "wb") as handle:
            yield handle
        return
    tmp = f"{parent}/.{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        with open(tmp, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fsync_dir(parent or ".")
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)


def write_bytes(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> None:
    with atomic_open(fs, path) as handle:
        handle.write(data)


def write_json(fs: fsspec.AbstractFileSystem, path: str, value: Any) -> None:
    write_bytes(fs, path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def read_json(fs: fsspec.AbstractFileSystem, path: str) -> Any | None:
    """The parsed JSON at `path`, or None when there is no such file."""
    try:
        with fs.open(path, "rb") as handle:
            return json.load(handle)
    except FileNotFoundError:
        return None
