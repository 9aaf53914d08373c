"""Distractor images (Revisited 1M): their names, and their global descriptors in blocks.

Distractors are ranked after the index (ids N..N+M-1) and are never positives or junk.
A million of them do not fit in memory as arrays: their `.delg_global` files are read a
block of rows at a time, concurrently, when the search asks for the block.
"""

from __future__ import annotations

import dataclasses
import os
import posixpath
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from delf_core import storage
from delf_core.features.naming import DELG_GLOBAL_SUFFIX, child_path
from delf_core.names import check_name
from delf_core.retrieval.search import read_global_descriptor
from delf_core.retrieval.top_k import Rows

# What a list may name images with; features are named after the image without it.
_IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")


@dataclasses.dataclass(frozen=True)
class Distractors:
    """Distractor images, in ranking order: each one's features folder and name."""

    folders: tuple[str, ...]
    folder_of: np.ndarray  # int32 [M]: which of `folders` holds each image
    names: list[str]

    def __len__(self) -> int:
        return len(self.names)

    def path(self, image: int, suffix: str) -> str:
        folder = self.folders[self.folder_of[image]]
        return child_path(folder, self.names[image], suffix, folder)


def read_distractor_list(path: str) -> list[str]:
    """Image names, one a line (as Revisited 1M's `revisitop1m.txt`), without extension.

    Blank lines are skipped; `.jpg`, `.jpeg` and `.png` endings are dropped.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming `path` and the name: one that leaves the folder (absolute,
            '..', a URL) or a file that is not text.
    """
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file of image names, one a line") from None
    names = []
    for line in text.splitlines():
        name = line.strip()
        if not name:
            continue
        stem, extension = posixpath.splitext(name)
        if extension.lower() in _IMAGE_EXTENSIONS:
            name = stem
        names.append(check_name(name, path))
    if not names:
        raise ValueError(f"{path}: names no distractor image")
    return names


def _listed_in(folder: str) -> list[str]:
    """Names of the `.delg_global` files under `folder` (in subfolders too), sorted."""
    fs, root = storage.resolve(folder)
    if not fs.isdir(root):
        raise FileNotFoundError(f"{folder}: no such distractor features folder")
    root = root.rstrip("/")
    names = []
    for found in fs.find(root):
        if found.endswith(DELG_GLOBAL_SUFFIX):
            names.append(found[len(root) + 1 : -len(DELG_GLOBAL_SUFFIX)])
    if not names:
        raise ValueError(f"{folder}: holds no {DELG_GLOBAL_SUFFIX} files")
    return sorted(names)


def find_distractors(folders: Sequence[str], list_path: str | None) -> Distractors:
    """The distractors: a list's names in its one folder, or every folder's files.

    Args:
        folders: Features folders (`--distractor_features_dir`).
        list_path: A file of names one a line (`--distractor_list`), relative to the one
            folder; None: every `.delg_global` under each folder, folder by folder.

    Raises:
        FileNotFoundError, ValueError: one line naming the folder or file.
    """
    folders = tuple(folders)
    if list_path is not None:
        if len(folders) != 1:
            raise ValueError(
                f"--distractor_list {list_path} names images of one folder: give exactly one "
                f"--distractor_features_dir (got {len(folders)})"
            )
        names = read_distractor_list(list_path)
        return Distractors(folders, np.zeros(len(names), np.int32), names)
    names, folder_of = [], []
    for number, folder in enumerate(folders):
        found = _listed_in(folder)
        names.extend(found)
        folder_of.append(np.full(len(found), number, np.int32))
    return Distractors(folders, np.concatenate([*folder_of, np.zeros(0, np.int32)]), names)


class DistractorDescriptors:
    """The distractors' [M, D] global descriptors as `Rows`: files read block by block.

    Raises (on reading a block): FileNotFoundError naming a missing file; ValueError
    naming a damaged one, or one whose size differs from `dim`.
    """

    def __init__(self, distractors: Distractors, dim: int, max_readers: int | None = None):
        self._distractors = distractors
        self.shape = (len(distractors), dim)
        self._readers = max_readers or min(32, (os.cpu_count() or 1) * 8)

    def _read(self, image: int) -> np.ndarray:
        path = self._distractors.path(image, DELG_GLOBAL_SUFFIX)
        descriptor = read_global_descriptor(path)
        if descriptor.shape != (self.shape[1],):
            raise ValueError(
                f"{path}: a global descriptor of {descriptor.size} values, but the queries' "
                f"have {self.shape[1]} (features of another model?)"
            )
        return descriptor

    def __getitem__(self, rows: slice) -> np.ndarray:
        images = range(*rows.indices(self.shape[0]))
        block = np.empty((len(images), self.shape[1]), np.float32)
        # Many small files, often on gs://: read them concurrently, into the block.
        with ThreadPoolExecutor(self._readers) as pool:
            for row, descriptor in enumerate(pool.map(self._read, images)):
                block[row] = descriptor
        return block


class StackedRows:
    """`Rows` of several matrices one after another: the index, then the distractors."""

    def __init__(self, parts: Sequence[Rows]):
        self._parts = list(parts)
        self._starts = np.cumsum([0] + [part.shape[0] for part in self._parts])
        self.shape = (int(self._starts[-1]), self._parts[0].shape[1])

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        pieces = []
        for part, first in zip(self._parts, self._starts[:-1], strict=True):
            end = first + part.shape[0]
            if start < end and stop > first:
                pieces.append(np.asarray(part[max(start, first) - first : min(stop, end) - first]))
        if not pieces:
            return np.zeros((0, self.shape[1]), np.float32)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
