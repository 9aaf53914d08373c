"""Safe unpacking of a verified tar into its split folder."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import fsspec

from delf_core import storage
from delf_core.download.members import (
    DEFAULT_LIMITS,
    HeaderRefused,
    MemberCheck,
    SafeTarInfo,
    UnpackLimits,
    UnpackResult,
)
from delf_core.download.staging import COPY_BUFFER, commit_staged, write_staged


def unpack_tar(
    tar_path: Path,
    fs: fsspec.AbstractFileSystem,
    dest_dir: str,
    limits: UnpackLimits = DEFAULT_LIMITS,
    staging: Path | None = None,
) -> UnpackResult:
    """Unpacks the images of `tar_path` under `dest_dir`: all of them, or none.

    Every member is checked (see `MemberCheck`) before anything is written. A local
    `dest_dir` gets the files through a private staging folder (by default
    `<dest_dir>/.unpack-<tar>`) moved into place once all are written; a remote one
    gets each file whole under its final name, and a failure part way leaves files
    that the tar's next unpacking overwrites.

    Raises:
      UnsafeTarError: naming the tar and the first member that must not be unpacked.
      DownloadError: when a file or folder of the split is in the way.
      tarfile.TarError: when the file is not a readable tar.
    """
    check = MemberCheck(tar_path.name, limits, tar_path.stat().st_size)
    try:
        with tarfile.open(tar_path, mode="r:", tarinfo=SafeTarInfo) as archive:
            # Reading the headers alone: nothing is written before every member passed.
            plan = [(m, target) for m in archive if (target := check.check(m)) is not None]
            if storage.is_local(fs):
                _unpack_locally(archive, plan, Path(dest_dir), tar_path.name, staging)
            else:
                for member, relative in plan:
                    source = archive.extractfile(member)
                    assert source is not None  # regular files always have a payload
                    with storage.atomic_open(fs, storage.join(dest_dir, relative)) as out:
                        shutil.copyfileobj(source, out, COPY_BUFFER)
    except HeaderRefused as error:
        raise error.for_tar(tar_path.name) from None
    return check.result(len(plan))


def _unpack_locally(
    archive: tarfile.TarFile,
    plan: list[tuple[tarfile.TarInfo, str]],
    dest_dir: Path,
    tar_name: str,
    staging: Path | None,
) -> None:
    staging = staging or dest_dir / f".unpack-{tar_name}"
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    try:
        for member, relative in plan:
            target = staging / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None
            write_staged(source, target)
        commit_staged(staging, [relative for _, relative in plan], dest_dir, tar_name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
