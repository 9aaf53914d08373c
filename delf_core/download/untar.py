"""Safe unpacking of a verified tar into its split folder."""

from __future__ import annotations

import posixpath
import shutil
import tarfile
from pathlib import Path

import fsspec

from delf_core import storage
from delf_core.download.errors import UnsafeTarError

_COPY_BUFFER = 1 << 20


def unpack_tar(tar_path: Path, fs: fsspec.AbstractFileSystem, dest_dir: str) -> int:
    """Unpacks every regular file of `tar_path` under `dest_dir`.

    All members are checked before anything is written, so a hostile tar leaves the
    split folder untouched. Each file appears whole under its final name.

    Returns:
      The number of `.jpg` files unpacked.

    Raises:
      UnsafeTarError: naming the first member that is a link, a device, has an absolute
        path or climbs out with `..`.
    """
    with tarfile.open(tar_path, mode="r:") as archive:
        members = archive.getmembers()
        files = [m for m in members if check_member(m, tar_path.name)]
        images = 0
        for member in files:
            target = storage.join(dest_dir, posixpath.normpath(member.name))
            source = archive.extractfile(member)
            assert source is not None  # regular files always have a payload
            with storage.atomic_open(fs, target) as out:
                shutil.copyfileobj(source, out, _COPY_BUFFER)
            images += member.name.lower().endswith(".jpg")
    return images


def check_member(member: tarfile.TarInfo, tar_name: str) -> bool:
    """True for a regular file to unpack, False for a directory; raises otherwise."""
    name = member.name
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeTarError(f"{tar_name}: refusing member with an absolute path: {name!r}")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UnsafeTarError(f"{tar_name}: refusing member that leaves the folder: {name!r}")
    if member.issym() or member.islnk():
        raise UnsafeTarError(f"{tar_name}: refusing link member: {name!r} -> {member.linkname!r}")
    if member.isdir():
        return False
    if not member.isfile():
        raise UnsafeTarError(f"{tar_name}: refusing special file (device or fifo): {name!r}")
    return True
