"""Which members of an untrusted tar may be unpacked, and how much a tar may unpack."""

from __future__ import annotations

import dataclasses
import posixpath
import re
import tarfile

from delf_core.download.errors import UnsafeTarError
from delf_core.download.manifest import MANIFEST_NAME, RECORDS_DIR
from delf_core.gldv2 import layout
from delf_core.step_config import option

# Names the download step itself writes at the top of a split folder: a member landing
# there could make a later run skip tars it never unpacked.
_OWN_NAMES = {MANIFEST_NAME, RECORDS_DIR} | {
    remote.name for split in layout.SPLITS for remote in layout.METADATA_FILES[split]
}
_OWN_PATTERN = re.compile(r"md5\.images_\d+\.txt|images_\d+\.tar(\.part)?|\.unpack-.*|\..*\.tmp")
# Shown names are cut short: a member name can be as long as the tar wants.
_SHOWN_NAME_CHARS = 120
# tarfile reads a long name or a pax header whole into memory; real ones are a few KB.
_MAX_EXTENDED_HEADER_BYTES = 1 << 20
_EXTENDED_TYPES = {
    tarfile.GNUTYPE_LONGNAME,
    tarfile.GNUTYPE_LONGLINK,
    tarfile.XHDTYPE,
    tarfile.XGLTYPE,
    tarfile.SOLARIS_XHDTYPE,
}


@dataclasses.dataclass(frozen=True)
class UnpackLimits:
    """What one tar may unpack, beyond the bound its own size sets."""

    max_unpacked_bytes: int = option(
        16 * 2**30,
        "most bytes one tar may unpack, the sum of its members' sizes (it may never unpack "
        "more than its own size either)",
        minimum=1,
    )
    max_tar_members: int = option(
        100_000,
        "most members (files and folders) one tar may hold; a GLDv2 tar holds about 6,500 images",
        minimum=1,
    )


DEFAULT_LIMITS = UnpackLimits()


@dataclasses.dataclass(frozen=True)
class UnpackResult:
    """What a tar put in its split: images, and members skipped as not images."""

    images: int
    skipped: int = 0
    skipped_example: str = ""


def shown(name: str) -> str:
    """A member name for a one-line message: quoted, escaped and cut short."""
    text = repr(name)
    return text if len(text) <= _SHOWN_NAME_CHARS else text[: _SHOWN_NAME_CHARS - 3] + "..."


class MemberCheck:
    """Checks the members of one tar in order; call `check` on each before writing it.

    Only images at `a/b/c/<id>.jpg` are unpacked. Other regular files are skipped and
    counted; folders are skipped. Links, devices, sparse files, names that are empty,
    absolute, climb out with `..` or land on the step's own files, and tars beyond the
    limits are refused with an UnsafeTarError naming the tar and the member.

    Args:
      tar_name: names the tar in messages.
      limits: the configured ceilings.
      tar_size: the tar's size when known; the members' sizes must fit in it, since
        a tar without sparse members cannot unpack to more bytes than it holds.
    """

    def __init__(self, tar_name: str, limits: UnpackLimits, tar_size: int | None = None) -> None:
        self.tar_name = tar_name
        self.limits = limits
        self.tar_size = tar_size
        self.members = 0
        self.declared_bytes = 0
        self.skipped = 0
        self.skipped_example = ""

    def check(self, member: tarfile.TarInfo) -> str | None:
        """The path under the split to write `member` to, or None to skip it.

        Raises:
          UnsafeTarError: for a member or a tar that must not be unpacked at all.
        """
        self.members += 1
        if self.members > self.limits.max_tar_members:
            self._refuse(
                member,
                f"more than {self.limits.max_tar_members} members (--max_tar_members)",
            )
        relative = _safe_relative(member, self.tar_name)
        if member.isdir():
            return None
        if relative == ".":
            self._refuse(member, "a file with an empty name")
        if member.issparse() or any(k.startswith("GNU.sparse.") for k in member.pax_headers):
            self._refuse(member, _SPARSE)
        if not member.isreg():
            self._refuse(member, "special file (device, fifo or unknown type)")
        top = relative.split("/", 1)[0]
        if top in _OWN_NAMES or _OWN_PATTERN.fullmatch(top):
            self._refuse(member, "named like one of the split's own files")
        self.declared_bytes += member.size
        if self.declared_bytes > self.limits.max_unpacked_bytes:
            self._refuse(
                member,
                f"members declare more than {self.limits.max_unpacked_bytes} bytes "
                "(--max_unpacked_bytes)",
            )
        if self.tar_size is not None and self.declared_bytes > self.tar_size:
            self._refuse(
                member,
                f"members declare {self.declared_bytes} bytes, more than the tar's {self.tar_size}",
            )
        if not layout.is_image_relpath(relative):
            self.skipped += 1
            self.skipped_example = self.skipped_example or relative
            return None
        return relative

    def result(self, images: int) -> UnpackResult:
        return UnpackResult(images, self.skipped, self.skipped_example)

    def _refuse(self, member: tarfile.TarInfo, why: str) -> None:
        raise UnsafeTarError(
            f"{self.tar_name}: refusing the tar at member {shown(member.name)}: {why}"
        )


class HeaderRefused(tarfile.TarError):
    """A header refused while tarfile parses it, before it can cost memory."""

    def __init__(self, name: str, why: str) -> None:
        super().__init__(f"{shown(name)}: {why}")
        self.name = name
        self.why = why

    def for_tar(self, tar_name: str) -> UnsafeTarError:
        return UnsafeTarError(
            f"{tar_name}: refusing the tar at member {shown(self.name)}: {self.why}"
        )


class SafeTarInfo(tarfile.TarInfo):
    """TarInfo that refuses sparse members and huge extended headers as they are parsed.

    tarfile would otherwise read a sparse map of any length (millions of entries from
    one tar) or a pax header of any size into memory. Pass as `tarinfo=` to
    `tarfile.open`; HeaderRefused is raised from iterating the archive.
    """

    def _proc_member(self, tarfile):  # noqa: ANN001 - tarfile's own signature
        if self.type in _EXTENDED_TYPES and self.size > _MAX_EXTENDED_HEADER_BYTES:
            raise HeaderRefused(self.name, f"an extended header of {self.size} bytes")
        return super()._proc_member(tarfile)

    def _proc_sparse(self, tarfile):  # noqa: ANN001 - old GNU sparse, type 'S'
        raise HeaderRefused(self.name, _SPARSE)

    def _proc_gnusparse_00(self, next, *args):  # noqa: A002, ANN001 - pax sparse 0.0
        raise HeaderRefused(_sparse_name(next, args), _SPARSE)

    def _proc_gnusparse_01(self, next, *args):  # noqa: A002, ANN001 - pax sparse 0.1
        raise HeaderRefused(_sparse_name(next, args), _SPARSE)

    def _proc_gnusparse_10(self, next, *args):  # noqa: A002, ANN001 - pax sparse 1.0
        raise HeaderRefused(_sparse_name(next, args), _SPARSE)


_SPARSE = "sparse member, which would expand when unpacked"


def _sparse_name(member: tarfile.TarInfo, args: tuple) -> str:
    """The name a pax sparse member will have (GNU.sparse.name), else its header's."""
    for arg in args:
        if isinstance(arg, dict) and "GNU.sparse.name" in arg:
            return str(arg["GNU.sparse.name"])
    return member.name


def _safe_relative(member: tarfile.TarInfo, tar_name: str) -> str:
    """The member's normalized path; raises for names that must never be followed."""
    name = member.name
    if not name:
        raise UnsafeTarError(f"{tar_name}: refusing member with an empty name: {shown(name)}")
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise UnsafeTarError(f"{tar_name}: refusing member with an absolute path: {shown(name)}")
    normal = posixpath.normpath(name)
    if normal == ".." or normal.startswith("../") or "/../" in f"/{name}/":
        raise UnsafeTarError(f"{tar_name}: refusing member that leaves the folder: {shown(name)}")
    if member.issym() or member.islnk():
        raise UnsafeTarError(
            f"{tar_name}: refusing link member: {shown(name)} -> {shown(member.linkname)}"
        )
    return normal
