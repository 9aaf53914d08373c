"""The `download` step: every tar, md5 file and CSV of the chosen GLDv2 splits."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import fsspec
import requests

from delf_core import storage
from delf_core.download.errors import ChecksumMismatchError, DownloadError
from delf_core.download.fetch import RetryPolicy, fetch_file, md5_of_file
from delf_core.download.manifest import SplitManifest
from delf_core.download.stream_untar import StreamingUnpacker
from delf_core.download.untar import unpack_tar
from delf_core.gldv2 import layout

log = logging.getLogger(__name__)


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
        if self.retry.retries < 0:
            raise ValueError(f"--retries={self.retry.retries}: must be 0 or more")


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
    """What happened to one file. `status` is downloaded, skipped or failed."""

    split: str
    name: str
    status: str
    size: int = 0
    md5: str = ""
    images: int = 0
    error: str = ""


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


class _Silent:
    def files_planned(self, count: int) -> None:
        pass

    def bytes_received(self, count: int) -> None:
        pass

    def file_finished(self, outcome: FileOutcome) -> None:
        pass


_thread_state = threading.local()


def _session() -> requests.Session:
    """One HTTP session per thread: sessions keep connections alive but are not thread-safe."""
    session = getattr(_thread_state, "session", None)
    if session is None:
        session = _thread_state.session = requests.Session()
    return session


def plan_jobs(config: DownloadConfig) -> list[TarJob]:
    counts = config.tar_counts()
    return [TarJob(split, i) for split in layout.SPLITS for i in range(counts[split])]


def _split_dir(config: DownloadConfig, split: str) -> tuple[fsspec.AbstractFileSystem, str]:
    fs, root = storage.resolve(config.output_dir)
    return fs, storage.join(root, split)


def _local_dir(config: DownloadConfig, split: str) -> Path:
    """Where bytes land while they download: the split folder itself when it is local."""
    fs, split_dir = _split_dir(config, split)
    if storage.is_local(fs):
        path = Path(split_dir)
    else:
        key = hashlib.sha1(config.output_dir.encode()).hexdigest()[:12]
        root = Path(config.staging_dir or Path(tempfile.gettempdir()) / f"delf-download-{key}")
        path = root / split
    path.mkdir(parents=True, exist_ok=True)
    return path


def download_metadata_file(
    config: DownloadConfig,
    split: str,
    remote: layout.RemoteFile,
    progress: ProgressListener | None = None,
) -> FileOutcome:
    """Fetches one CSV into its split folder, unless it is there already."""
    fs, split_dir = _split_dir(config, split)
    target = storage.join(split_dir, remote.name)
    if fs.exists(target):
        return FileOutcome(split, remote.name, "skipped", size=fs.size(target))
    local = _local_dir(config, split) / remote.name
    on_bytes = progress.bytes_received if progress else None
    result = fetch_file(
        _session(),
        layout.join_url(config.base_url, remote.bucket_path),
        local,
        policy=config.retry,
        on_bytes=on_bytes,
    )
    _publish(fs, local, target)
    return FileOutcome(split, remote.name, "downloaded", size=result.size, md5=result.md5)


def download_tar(
    config: DownloadConfig,
    job: TarJob,
    progress: ProgressListener | None = None,
    expected_md5: str | None = None,
) -> FileOutcome:
    """Fetches, verifies and unpacks one tar; a tar already in the manifest is skipped.

    With `expected_md5` (from `fetch_checksums`), a manifest entry for other bytes does
    not count as done, and the md5 file is not read again.

    The order makes a kill at any point safe to rerun: the tar is renamed into place
    only with the right md5, unpacked files appear whole, the manifest entry is written
    after unpacking, and the tar is deleted (with `delete_tars`) only after that.

    Raises:
      DownloadError: naming the tar when it cannot be fetched, verified or unpacked.
    """
    fs, split_dir = _split_dir(config, job.split)
    manifest = SplitManifest(fs, split_dir, job.split)
    entry = manifest.tar_entry(job.name)
    if entry is not None and expected_md5 in (None, entry["md5"]):
        return FileOutcome(
            job.split, job.name, "skipped", entry["size"], entry["md5"], entry["images"]
        )
    local_dir = _local_dir(config, job.split)
    expected = expected_md5 or _expected_md5(config, job, local_dir)
    tar_path = local_dir / job.name
    md5_path = local_dir / layout.md5_name(job.index)
    try:
        images = _fetch_and_unpack(config, job, tar_path, expected, split_dir, progress)
    except ChecksumMismatchError:
        # The md5 file may be the wrong one: fetch it afresh on the next run.
        md5_path.unlink(missing_ok=True)
        raise
    size = tar_path.stat().st_size
    if not storage.is_local(fs):
        _publish(fs, md5_path, storage.join(split_dir, md5_path.name))
        if not config.delete_tars:
            _publish(fs, tar_path, storage.join(split_dir, job.name))
    entry = {"size": size, "md5": expected, "images": images, "tar_kept": not config.delete_tars}
    manifest.record("tars", job.name, entry, config.base_url)
    if config.delete_tars and tar_path.exists():
        tar_path.unlink()
    log.debug("%s/%s: %d images", job.split, job.name, images)
    return FileOutcome(job.split, job.name, "downloaded", size, expected, images)


def _fetch_and_unpack(
    config: DownloadConfig,
    job: TarJob,
    tar_path: Path,
    expected: str,
    split_dir: str,
    progress: ProgressListener | None,
) -> int:
    """Fetches the tar unless a verified copy is there, and unpacks it; returns its images.

    A fresh download into a local folder is unpacked while it arrives (into a staging
    folder moved into place once the md5 matches); otherwise the verified file is.
    """
    fs = storage.resolve(config.output_dir)[0]
    if tar_path.exists() and md5_of_file(tar_path) != expected:
        tar_path.unlink()  # left by an interrupted run with other bytes: fetch again
    staging = tar_path.with_name(f".unpack-{tar_path.name}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    part = tar_path.with_name(tar_path.name + ".part")
    unpacker = None
    if storage.is_local(fs) and not tar_path.exists() and not part.exists():
        unpacker = StreamingUnpacker(staging, job.name)
    try:
        if not tar_path.exists():
            fetch_file(
                _session(),
                layout.join_url(config.base_url, layout.tar_bucket_path(job.split, job.index)),
                tar_path,
                expected_md5=expected,
                policy=config.retry,
                on_bytes=progress.bytes_received if progress else None,
                tee=unpacker,
            )
        if unpacker is not None and unpacker.finish(tar_path.stat().st_size):
            return unpacker.commit(Path(split_dir))
        try:
            return unpack_tar(tar_path, fs, split_dir)
        except tarfile.TarError as error:
            raise DownloadError(f"{job.name}: not a readable tar: {error}") from None
    finally:
        if unpacker is not None:
            unpacker.discard()


def fetch_checksums(config: DownloadConfig, split: str) -> dict[str, str]:
    """The published md5 of each configured tar of `split`, fetched `max_workers` at once.

    Raises:
      DownloadError: for the first md5 file that cannot be fetched or parsed.
    """
    local_dir = _local_dir(config, split)
    jobs = [job for job in plan_jobs(config) if job.split == split]
    with concurrent.futures.ThreadPoolExecutor(config.max_workers) as pool:
        digests = pool.map(lambda job: _expected_md5(config, job, local_dir), jobs)
        return {job.name: digest for job, digest in zip(jobs, digests, strict=True)}


def _expected_md5(config: DownloadConfig, job: TarJob, local_dir: Path) -> str:
    md5_path = local_dir / layout.md5_name(job.index)
    if not md5_path.exists():
        fetch_file(
            _session(),
            layout.join_url(config.base_url, layout.md5_bucket_path(job.split, job.index)),
            md5_path,
            policy=config.retry,
        )
    try:
        return layout.parse_md5_file(md5_path.read_text(errors="replace"), md5_path.name)
    except ValueError as error:
        md5_path.unlink()  # do not trust it next time either
        raise DownloadError(str(error)) from None


def _publish(fs: fsspec.AbstractFileSystem, local: Path, target: str) -> None:
    """Moves a finished local file to its place in a remote output folder."""
    if storage.is_local(fs):
        return
    fs.put_file(str(local), target)
    os.remove(local)


def download(config: DownloadConfig, progress: ProgressListener | None = None) -> DownloadReport:
    """Downloads every CSV and tar of the configured splits, `max_workers` files at once.

    One file failing does not stop the others; the report lists every outcome.
    """
    config.validate()
    listener = progress or _Silent()
    work = [
        (
            split,
            remote.name,
            functools.partial(download_metadata_file, config, split, remote, listener),
        )
        for split in layout.SPLITS
        for remote in layout.METADATA_FILES[split]
    ]
    work += [
        (job.split, job.name, functools.partial(download_tar, config, job, listener))
        for job in plan_jobs(config)
    ]
    listener.files_planned(len(work))
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(config.max_workers) as pool:
        futures = {pool.submit(_guarded, split, name, fn): None for split, name, fn in work}
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            listener.file_finished(outcome)
    order = {split: i for i, split in enumerate(layout.SPLITS)}
    outcomes.sort(key=lambda o: (order[o.split], o.name))
    return DownloadReport(outcomes)


def _guarded(split: str, name: str, fn: Callable[[], FileOutcome]) -> FileOutcome:
    """Runs one file's work; a failure becomes a failed outcome naming the file."""
    try:
        return fn()
    except (DownloadError, OSError) as error:
        return FileOutcome(split, name, "failed", error=str(error))
