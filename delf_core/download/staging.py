"""A tar's files, unpacked into a private folder, moved into the split all at once."""

from __future__ import annotations

import os
import shutil
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import IO

from delf_core import storage
from delf_core.download.errors import DownloadError
from delf_core.download.members import shown

COPY_BUFFER = 1 << 20


def write_staged(source: IO[bytes], target: Path) -> None:
    """Copies one member to `target` and syncs it, so a later rename publishes whole bytes."""
    with open(target, "wb") as out:
        shutil.copyfileobj(source, out, COPY_BUFFER)
        out.flush()
        os.fsync(out.fileno())


def commit_staged(staging: Path, files: Iterable[str], split_dir: Path, tar_name: str) -> None:
    """Moves `files` (paths relative to `staging`) to the same paths under `split_dir`.

    Everything in the way (a file where a folder is needed, a folder where a file goes)
    is found before anything moves, so such a split gets none of the tar's files. A
    folder new to the split moves in one rename; into an existing one, file by file.
    The folders that changed are synced once at the end.

    Raises:
      DownloadError: one line naming the tar, the member and what is in the way.
    """
    by_folder: dict[str, list[str]] = defaultdict(list)
    for relative in files:
        folder, _, name = relative.rpartition("/")
        by_folder[folder].append(name)
    _check_the_way(by_folder, split_dir, tar_name)
    touched: set[Path] = set()
    try:
        for folder, names in by_folder.items():
            final = split_dir / folder
            if folder and not final.exists():
                final.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.rename(staging / folder, final)
                    touched.update(_ancestors(final.parent, split_dir))
                    continue
                except OSError:
                    pass  # another tar made it meanwhile: move file by file
            final.mkdir(parents=True, exist_ok=True)
            for name in names:
                os.replace(staging / folder / name, final / name)
            touched.update(_ancestors(final, split_dir))
    except OSError as error:
        raise DownloadError(
            f"{tar_name}: could not move its files into {split_dir}: {error.strerror or error}"
        ) from None
    for folder in touched:
        storage.fsync_dir(folder)


def _check_the_way(by_folder: dict[str, list[str]], split_dir: Path, tar_name: str) -> None:
    folders_ok: set[Path] = set()
    for folder, names in by_folder.items():
        path = split_dir
        for part in folder.split("/") if folder else []:
            path = path / part
            if path in folders_ok:
                continue
            if path.exists() and not path.is_dir():
                raise DownloadError(
                    f"{tar_name}: member {shown(f'{folder}/{names[0]}')} needs a folder where "
                    f"the file {path} is; move that file away and rerun"
                )
            folders_ok.add(path)
        final = split_dir / folder
        if final.is_dir():
            for name in names:
                if (final / name).is_dir():
                    raise DownloadError(
                        f"{tar_name}: member {shown(f'{folder}/{name}')} would replace the "
                        f"folder {final / name}; move that folder away and rerun"
                    )


def _ancestors(folder: Path, split_dir: Path) -> list[Path]:
    """`folder` and each folder above it up to `split_dir`, whose entries may have changed."""
    out = [folder]
    while folder != split_dir and split_dir in folder.parents:
        folder = folder.parent
        out.append(folder)
    return out
