"""Whole-file reads and atomic writes for local paths and fsspec URLs (gs://, memory://)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from delf_core import storage

T = TypeVar("T")


def read_bytes(path: str) -> bytes:
    """The bytes of the file at `path` (a local path or any fsspec URL)."""
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        return handle.read()


def read_parsed(path: str, parse: Callable[[bytes], T]) -> T:
    """`parse` of the file's bytes.

    Raises:
      ValueError: `parse`'s, prefixed with `path`.
    """
    try:
        return parse(read_bytes(path))
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err


def write_bytes(path: str, data: bytes) -> None:
    """Writes `data` to `path` so that the file appears whole or not at all."""
    fs, fs_path = storage.resolve(path)
    storage.write_bytes(fs, fs_path, data)
