"""The download step's config, its unit of work, and what it reports."""

from __future__ import annotations

import dataclasses
from typing import Protocol

from delf_core.download.fetch import RetryPolicy
from delf_core.download.members import UnpackLimits
from delf_core.gldv2 import layout


@dataclasses.dataclass(frozen=True)
class DownloadConfig:
    """What to download and how (the flags of `delf download`).

    Attributes:
      num_train, num_index, num_test: how many tars of each split, from index 0.
      output_dir: local path or fsspec URL; gets one folder per split.
      base_url: the bucket root; tars are at `<base_url>/<split>/images_NNN.tar`.
      max_workers: files fetched at once.
      delete_tars: remove each tar once it is verified and unpacked.
      retry: retries, backoff and timeouts for each file.
      staging_dir: local folder for tars while they download and unpack, used when
        `output_dir` is not local; by default a folder under the system temp dir.
      max_unpacked_bytes: the most one tar may unpack (the sum of its members' sizes),
        besides never more than the tar's own size.
      max_tar_members: the most members (files and folders) one tar may hold.
    """

    num_train: int
    num_index: int
    num_test: int
    output_dir: str = "gldv2_dataset"
    base_url: str = layout.DEFAULT_BASE_URL
    max_workers: int = 8
    delete_tars: bool = False
    retry: RetryPolicy = RetryPolicy()
    staging_dir: str | None = None
    max_unpacked_bytes: int = UnpackLimits.max_unpacked_bytes
    max_tar_members: int = UnpackLimits.max_members

    @property
    def limits(self) -> UnpackLimits:
        return UnpackLimits(self.max_unpacked_bytes, self.max_tar_members)

    def tar_counts(self) -> dict[str, int]:
        return {
            layout.TRAIN: self.num_train,
            layout.INDEX: self.num_index,
            layout.TEST: self.num_test,
        }

    def validate(self) -> None:
        """Raises ValueError naming the bad argument."""
        for split, count in self.tar_counts().items():
            if not 0 <= count <= layout.MAX_TARS[split]:
                raise ValueError(
                    f"NUM_{split.upper()}={count}: GLDv2 has {layout.MAX_TARS[split]} {split} "
                    f"tars; pass a number from 0 to {layout.MAX_TARS[split]}"
                )
        if self.max_workers < 1:
            raise ValueError(f"--max_workers={self.max_workers}: must be at least 1")
        self.retry.validate()
        if self.max_unpacked_bytes < 1:
            raise ValueError(f"--max_unpacked_bytes={self.max_unpacked_bytes}: must be at least 1")
        if self.max_tar_members < 1:
            raise ValueError(f"--max_tar_members={self.max_tar_members}: must be at least 1")


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

    def bytes_received(self, count: int) -> None: ...

    def file_finished(self, outcome: FileOutcome) -> None: ...


class SilentProgress:
    def files_planned(self, count: int) -> None:
        pass

    def bytes_received(self, count: int) -> None:
        pass

    def file_finished(self, outcome: FileOutcome) -> None:
        pass
