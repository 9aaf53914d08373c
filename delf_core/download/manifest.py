"""The per-split download manifest: which tars are verified and unpacked, and what they held.

Each finished file gets a record of its own, `<split>/.download_manifest/<section>/<name>.json`,
written whole by the one task that finished it. Processes never rewrite each other's
records, so concurrent downloads (threads, processes, machines; local or gs://) lose no
entry, without a lock. `<split>/download_manifest.json` is the summary of the records,
written by `write_summary` when a download ends; readers merge the records on read.
"""

from __future__ import annotations

import json
from typing import Any

import fsspec

from delf_core import __version__, storage
from delf_core.download.redact import redact_url

MANIFEST_NAME = "download_manifest.json"
RECORDS_DIR = ".download_manifest"
SECTIONS = ("tars", "metadata")


class SplitManifest:
    """The records of one split folder, and their summary in `download_manifest.json`."""

    def __init__(self, fs: fsspec.AbstractFileSystem, split_dir: str, split: str) -> None:
        self.fs = fs
        self.split_dir = split_dir
        self.path = storage.join(split_dir, MANIFEST_NAME)
        self.split = split

    def _record_path(self, section: str, name: str) -> str:
        if section not in SECTIONS:
            raise ValueError(f"unknown manifest section {section!r}; one of {SECTIONS}")
        return storage.join(self.split_dir, RECORDS_DIR, section, f"{name}.json")

    def entry(self, section: str, name: str) -> dict[str, Any] | None:
        """The record of one file, or None when it is not done."""
        try:
            record = storage.read_json(self.fs, self._record_path(section, name))
        except json.JSONDecodeError:
            return None  # damaged: the file is done again, which rewrites it
        if record is not None:
            return record
        # A split downloaded before records existed has its entries in the summary only.
        return self._summary().get(section, {}).get(name)

    def tar_entry(self, name: str) -> dict[str, Any] | None:
        return self.entry("tars", name)

    def record(self, section: str, name: str, entry: dict[str, Any], base_url: str) -> None:
        """Marks one file done, noting where it came from (credentials masked)."""
        record = {**entry, "base_url": redact_url(base_url)}
        storage.write_json(self.fs, self._record_path(section, name), record)

    def load(self, summary: dict[str, Any] | None = None) -> dict[str, Any]:
        """The summary's fields with every record merged in (records win)."""
        data = dict(self._summary() if summary is None else summary)
        for section in SECTIONS:
            data[section] = dict(data.get(section) or {})
        records_root = storage.join(self.split_dir, RECORDS_DIR)
        try:
            paths = sorted(p for p in self.fs.find(records_root) if p.endswith(".json"))
        except FileNotFoundError:
            paths = []
        if paths:
            blobs = self.fs.cat(paths, on_error="omit")  # one batch of reads on gs://
            for path, blob in blobs.items():
                section, name = path.rsplit("/", 2)[-2:]
                try:
                    record = json.loads(blob)
                except ValueError:
                    continue  # damaged: not done (see `entry`)
                if section in SECTIONS:
                    data[section][name.removesuffix(".json")] = record
        return data

    def write_summary(self, base_url: str) -> bool:
        """Rewrites `download_manifest.json` from the records; False when it was current.

        Credentials in `base_url` are masked.
        """
        current = self._summary()
        data = self.load(current)
        data.update(step="download", split=self.split, base_url=redact_url(base_url))
        data["delf_version"] = __version__
        data["images"] = sum(e.get("images", 0) for e in data["tars"].values())
        if data == current:
            return False  # a rerun that changed nothing leaves the file untouched
        storage.write_json(self.fs, self.path, data)
        return True

    def _summary(self) -> dict[str, Any]:
        try:
            return storage.read_json(self.fs, self.path) or {}
        except json.JSONDecodeError:
            return {}  # cut short by a crash of an older version: the records rebuild it
