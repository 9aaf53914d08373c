"""The per-split download manifest: which tars are verified and unpacked, and what they held."""

from __future__ import annotations

import threading
from typing import Any

import fsspec

from delf_core import __version__, storage

MANIFEST_NAME = "download_manifest.json"

# One lock per manifest file: tasks of one process record into it from many threads.
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: str) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())


class SplitManifest:
    """`<split>/download_manifest.json`: {"tars": {name: entry}, "metadata": {name: entry}}.

    Each record re-reads the file under a lock and rewrites it whole, so concurrent
    recorders in one process never lose an entry and a kill never leaves half a file.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, split_dir: str, split: str) -> None:
        self.fs = fs
        self.path = storage.join(split_dir, MANIFEST_NAME)
        self.split = split

    def load(self) -> dict[str, Any]:
        data = storage.read_json(self.fs, self.path) or {}
        data.setdefault("tars", {})
        data.setdefault("metadata", {})
        return data

    def tar_entry(self, name: str) -> dict[str, Any] | None:
        return self.load()["tars"].get(name)

    def record(self, section: str, name: str, entry: dict[str, Any], base_url: str) -> None:
        with _lock_for(self.path):
            data = self.load()
            data[section][name] = entry
            data.update(step="download", split=self.split, base_url=base_url)
            data["delf_version"] = __version__
            data["images"] = sum(e.get("images", 0) for e in data["tars"].values())
            storage.write_json(self.fs, self.path, data)
