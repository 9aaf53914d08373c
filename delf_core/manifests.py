"""Step manifests: read them or None, write them whole and last, fingerprint what they name.

A step finishes by writing a small JSON manifest (DESIGN.md rule 5); whether its outputs
are current is decided by reading it back. A manifest that is missing, unreadable or
half-written (a kill mid-write on an object store) reads as None: not a finished step.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from delf_core import storage

# Where an output of other inputs is kept (one generation) rather than deleted.
PREVIOUS_SUFFIX = ".previous"


def read_json(url: str) -> Any | None:
    """The parsed JSON at `url`, or None when it is missing, unreadable or half-written."""
    fs, path = storage.resolve(url)
    try:
        return storage.read_json(fs, path)
    except (OSError, ValueError):
        return None


def read_text(url: str) -> str | None:
    """The UTF-8 text at `url`, or None when it is missing, unreadable or not text."""
    fs, path = storage.resolve(url)
    try:
        with fs.open(path, "rb") as handle:
            return handle.read().decode()
    except (OSError, ValueError):
        return None


def write_json(url: str, value: Any) -> None:
    """Writes `value` as JSON so that it appears whole or not at all.

    Write a step's manifest last: it then never vouches for outputs not all there.
    """
    fs, path = storage.resolve(url)
    storage.write_json(fs, path, value)


def sha256_file(url: str) -> str | None:
    """sha256 of a file's bytes, or None when there is no such file."""
    fs, path = storage.resolve(url)
    digest = hashlib.sha256()
    try:
        with fs.open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except FileNotFoundError:
        return None
    return digest.hexdigest()


def fingerprint(value: Any) -> str:
    """sha256 of `value` as sorted-key JSON: equal values give equal fingerprints."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def set_aside(url: str) -> str | None:
    """Moves a file or folder to `<url>.previous`, replacing an older one there.

    Returns:
        Where it went, or None when there was nothing at `url`.
    """
    fs, path = storage.resolve(url.rstrip("/"))
    if not fs.exists(path):
        return None
    previous = path + PREVIOUS_SUFFIX
    if fs.exists(previous):
        fs.rm(previous, recursive=True)
    fs.mv(path, previous, recursive=True)
    return storage.url_of(fs, previous)
