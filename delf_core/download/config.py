"""The download step's config, its unit of work, and what it reports."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from delf_core.download.fetch import RetryPolicy
from delf_core.download.members import UnpackLimits
from delf_core.gldv2 import layout
from delf_core.step_config import check, nested, option


def _tars(split: str) -> str:
    return f"{split} tars to fetch, images_000 onwards (at most {layout.MAX_TARS[split]})"


@dataclasses.dataclass(frozen=True)
class DownloadConfig:
    """What to download and how: the arguments and flags of `delf download`.

    Tars are at `<base_url>/<split>/images_NNN.tar`; `output_dir` gets one folder per
    split. `staging_dir` is used when `output_dir` is not local.
    """

    num_train: int = option(
        help=_tars(layout.TRAIN), positional=True, minimum=0, maximum=layout.MAX_TARS[layout.TRAIN]
    )
    num_index: int = option(
        help=_tars(layout.INDEX), positional=True, minimum=0, maximum=layout.MAX_TARS[layout.INDEX]
    )
    num_test: int = option(
        help=_tars(layout.TEST), positional=True, minimum=0, maximum=layout.MAX_TARS[layout.TEST]
    )
    output_dir: str = option(
        layout.DEFAULT_DATASET_DIR,
        "folder or fsspec URL (gs://...) that gets train/, index/ and test/",
        flow=False,
    )
    base_url: str = option(layout.DEFAULT_BASE_URL, "root of the GLDv2 bucket or of a mirror of it")
    max_workers: int = option(8, "files fetched at once", minimum=1)
    delete_tars: bool = option(False, "delete each tar once verified and unpacked")
    retry: RetryPolicy = nested(RetryPolicy)
    limits: UnpackLimits = nested(UnpackLimits)
    staging_dir: str | None = option(
        None, "local folder for tars in flight when --output_dir is remote (default: temp dir)"
    )

    def tar_counts(self) -> dict[str, int]:
        return {
            layout.TRAIN: self.num_train,
            layout.INDEX: self.num_index,
            layout.TEST: self.num_test,
        }

    def validate(self) -> None:
        """Raises ValueError naming the bad argument."""
        check(self)


@dataclasses.dataclass(frozen=True)
class TarJob:
    """One tar of one split."""

    split: str
    index: int

    @property
    def name(self) -> str:
        return layout.tar_name(self.index)


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    """What happened to one file. `status` is downloaded, skipped or failed.

    `skipped_members` counts the members of a tar that were not images, left out.
    """

    split: str
    name: str
    status: str
    size: int = 0
    md5: str = ""
    images: int = 0
    error: str = ""
    skipped_members: int = 0


@dataclasses.dataclass
class DownloadReport:
    outcomes: list[FileOutcome]

    @property
    def failed(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.status == "failed"]

    def count(self, status: str) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def images(self) -> int:
        return sum(o.images for o in self.outcomes if o.status != "failed")


class ProgressListener(Protocol):
    """Receives progress of a download; the CLI draws it, a flow publishes it."""

    def files_planned(self, count: int) -> None: ...

    def bytes_planned(self, total: int | None) -> None:
        """The bytes of every planned file (None when a server gives no size)."""

    def bytes_received(self, count: int) -> None: ...

    def bytes_settled(self, count: int) -> None:
        """Once a file is done: what makes its bytes count as its size, i.e. bytes that
        were there already (a file done before, a resumed part) or, when negative,
        bytes received twice (an attempt that started over)."""

    def file_finished(self, outcome: FileOutcome) -> None: ...


class SilentProgress:
    def files_planned(self, count: int) -> None:
        pass

    def bytes_planned(self, total: int | None) -> None:
        pass

    def bytes_settled(self, count: int) -> None:
        pass

    def bytes_received(self, count: int) -> None:
        pass

    def file_finished(self, outcome: FileOutcome) -> None:
        pass
