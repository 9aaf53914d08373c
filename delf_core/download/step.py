"""The `download` step: every tar, md5 file and CSV of the chosen GLDv2 splits."""

from __future__ import annotations

import concurrent.futures
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
from typing import BinaryIO

import fsspec
import requests

from delf_core import storage
from delf_core.download.config import (
    DownloadConfig,
    DownloadReport,
    FileOutcome,
    ProgressListener,
    SilentProgress,
    TarJob,
)
from delf_core.download.csv_check import check_csv
from delf_core.download.errors import ChecksumMismatchError, DownloadError
from delf_core.download.fetch import fetch_file, md5_of_file
from delf_core.download.manifest import SplitManifest
from delf_core.download.members import UnpackResult, shown
from delf_core.download.sizes import planned_sizes
from delf_core.download.stream_untar import StreamingUnpacker
from delf_core.download.untar import unpack_tar
from delf_core.gldv2 import layout

log = logging.getLogger(__name__)

# An md5sum line is about 50 bytes; anything much longer is not one.
_MAX_MD5_FILE_BYTES = 4096
_DAMAGED_SUFFIX = ".damaged"


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
    """Fetches one CSV into its split folder, unless it is there already.

    The CSV goes into place only once it reads as CSV with the published header and the
    same number of fields on every row; a damaged one is fetched again. A CSV found in
    place without a manifest record (from an older run, or put there by hand) is
    checked once the same way; a damaged one is renamed `<name>.damaged` and fetched.

    Raises:
      CorruptFileError: naming the file and what is wrong, when every fetch was damaged.
      DownloadError: when it cannot be fetched.
    """
    fs, split_dir = _split_dir(config, split)
    target = storage.join(split_dir, remote.name)
    manifest = SplitManifest(fs, split_dir, split)
    if fs.exists(target):
        size = fs.size(target)
        entry = manifest.entry("metadata", remote.name)
        if entry is not None and entry.get("size") == size:
            return FileOutcome(split, remote.name, "skipped", size=size, md5=entry.get("md5", ""))
        try:
            with fs.open(target, "rb") as handle:
                found_rows = _check_csv(handle, remote)
        except ValueError as error:
            # Kept aside, not deleted: it may be someone's own edit.
            fs.mv(target, f"{target}{_DAMAGED_SUFFIX}")
            log.warning(
                "%s/%s: %s; kept as %s%s and fetched again",
                split,
                remote.name,
                error,
                remote.name,
                _DAMAGED_SUFFIX,
            )
        else:
            entry = {"size": size, "rows": found_rows}
            manifest.record("metadata", remote.name, entry, config.base_url)
            return FileOutcome(split, remote.name, "skipped", size=size)
    local = _local_dir(config, split) / remote.name
    rows: list[int] = []

    def validate(path: Path) -> None:
        with open(path, "rb") as handle:
            rows[:] = [_check_csv(handle, remote)]

    result = fetch_file(
        _session(),
        layout.join_url(config.base_url, remote.bucket_path),
        local,
        policy=config.retry,
        on_bytes=progress.bytes_received if progress else None,
        validate=validate,
    )
    _publish(fs, local, target)
    entry = {"size": result.size, "md5": result.md5, "rows": rows[0] if rows else None}
    manifest.record("metadata", remote.name, entry, config.base_url)
    return FileOutcome(split, remote.name, "downloaded", size=result.size, md5=result.md5)


def _check_csv(handle: BinaryIO, remote: layout.RemoteFile) -> int | None:
    return check_csv(handle, remote.name, remote.columns) if remote.columns else None


def download_tar(
    config: DownloadConfig,
    job: TarJob,
    progress: ProgressListener | None = None,
    expected_md5: str | None = None,
) -> FileOutcome:
    """Fetches, verifies and unpacks one tar; a tar already in the manifest is skipped.

    With `expected_md5` (from `fetch_checksums`), a manifest entry for other bytes does
    not count as done, and the md5 file is not read first. After a wrong md5 the md5
    file is fetched again, in case it was the one damaged on its way.

    The order makes a kill at any point safe to rerun: the tar is renamed into place
    only with the right md5, unpacked files appear whole, the manifest record is written
    after unpacking, and the tar is deleted (with `delete_tars`) only after that.

    Raises:
      DownloadError: naming the tar when it cannot be fetched, verified or unpacked.
    """
    fs, split_dir = _split_dir(config, job.split)
    manifest = SplitManifest(fs, split_dir, job.split)
    entry = manifest.tar_entry(job.name)
    if entry is not None and expected_md5 in (None, entry["md5"]):
        return FileOutcome(
            job.split,
            job.name,
            "skipped",
            entry["size"],
            entry["md5"],
            entry["images"],
            skipped_members=entry.get("skipped_members", 0),
        )
    local_dir = _local_dir(config, job.split)
    expected = expected_md5 or _expected_md5(config, job, local_dir)
    tar_path = local_dir / job.name
    md5_path = local_dir / layout.md5_name(job.index)
    try:
        unpacked, md5 = _fetch_and_unpack(config, job, tar_path, expected, split_dir, progress)
    except ChecksumMismatchError:
        # The md5 file may be the wrong one: fetch it afresh on the next run.
        md5_path.unlink(missing_ok=True)
        raise
    size = tar_path.stat().st_size
    if not storage.is_local(fs):
        _publish(fs, md5_path, storage.join(split_dir, md5_path.name))
        if not config.delete_tars:
            _publish(fs, tar_path, storage.join(split_dir, job.name))
    entry = {
        "size": size,
        "md5": md5,
        "images": unpacked.images,
        "skipped_members": unpacked.skipped,
        "tar_kept": not config.delete_tars,
    }
    manifest.record("tars", job.name, entry, config.base_url)
    if config.delete_tars and tar_path.exists():
        tar_path.unlink()
    if unpacked.skipped:
        log.warning(
            "%s/%s: left out %d members that are not images at a/b/c/<id>.jpg (such as %s)",
            job.split,
            job.name,
            unpacked.skipped,
            shown(unpacked.skipped_example),
        )
    log.debug("%s/%s: %d images", job.split, job.name, unpacked.images)
    return FileOutcome(
        job.split, job.name, "downloaded", size, md5, unpacked.images, "", unpacked.skipped
    )


def _fetch_and_unpack(
    config: DownloadConfig,
    job: TarJob,
    tar_path: Path,
    expected: str,
    split_dir: str,
    progress: ProgressListener | None,
) -> tuple[UnpackResult, str]:
    """Fetches the tar unless a verified copy is there, and unpacks it.

    A fresh download into a local folder is unpacked while it arrives (into a staging
    folder moved into place once the md5 matches); otherwise the verified file is.

    Returns:
      What was unpacked, and the md5 the tar was verified against.
    """
    fs = storage.resolve(config.output_dir)[0]
    if tar_path.exists() and md5_of_file(tar_path) != expected:
        tar_path.unlink()  # left by an interrupted run with other bytes: fetch again
    staging = tar_path.with_name(f".unpack-{tar_path.name}")
    shutil.rmtree(staging, ignore_errors=True)  # left by a killed run
    part = tar_path.with_name(tar_path.name + ".part")
    unpacker = None
    if storage.is_local(fs) and not tar_path.exists() and not part.exists():
        unpacker = StreamingUnpacker(staging, job.name, config.limits)
    try:
        if not tar_path.exists():
            local_dir = tar_path.parent
            expected = fetch_file(
                _session(),
                layout.join_url(config.base_url, layout.tar_bucket_path(job.split, job.index)),
                tar_path,
                expected_md5=expected,
                policy=config.retry,
                on_bytes=progress.bytes_received if progress else None,
                tee=unpacker,
                refresh_md5=lambda: _expected_md5(config, job, local_dir, refetch=True),
            ).md5
        if unpacker is not None:
            if unpacker.finish(tar_path.stat().st_size):
                return unpacker.commit(Path(split_dir)), expected
            unpacker.discard()  # the verified file is unpacked instead, and says why
        try:
            return unpack_tar(tar_path, fs, split_dir, config.limits, staging), expected
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


def _expected_md5(
    config: DownloadConfig, job: TarJob, local_dir: Path, refetch: bool = False
) -> str:
    """The digest in the tar's md5 file, fetched unless a readable copy is there.

    A damaged md5 file is fetched again, as many times as a tar would be.
    """
    md5_path = local_dir / layout.md5_name(job.index)
    if refetch:
        md5_path.unlink(missing_ok=True)
    if md5_path.exists():
        try:
            return _parse_md5_file(md5_path)
        except ValueError:
            md5_path.unlink()  # damaged, perhaps by an older version: fetch it again
    fetch_file(
        _session(),
        layout.join_url(config.base_url, layout.md5_bucket_path(job.split, job.index)),
        md5_path,
        policy=config.retry,
        validate=_parse_md5_file,
    )
    return _parse_md5_file(md5_path)


def _parse_md5_file(path: Path) -> str:
    """Raises ValueError naming the file when it holds no md5sum line."""
    size = path.stat().st_size
    if size > _MAX_MD5_FILE_BYTES:
        raise ValueError(f"{path.name}: {size} bytes, too long for an md5sum line")
    return layout.parse_md5_file(path.read_text(errors="replace"), path.name)


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
    listener = progress or SilentProgress()
    work = [
        (split, remote.name, functools.partial(download_metadata_file, config, split, remote))
        for split in layout.SPLITS
        for remote in layout.METADATA_FILES[split]
    ]
    work += [
        (job.split, job.name, functools.partial(download_tar, config, job))
        for job in plan_jobs(config)
    ]
    listener.files_planned(len(work))
    sizes = planned_sizes(config)
    unknown = [f"{split}/{name}" for (split, name), size in sizes.items() if size is None]
    if unknown:
        log.info("no size for %d files (such as %s): no byte total", len(unknown), unknown[0])
    listener.bytes_planned(None if unknown else sum(sizes.values()))
    outcomes = []
    with concurrent.futures.ThreadPoolExecutor(config.max_workers) as pool:
        futures = {}
        for split, name, fn in work:
            counter = _CountingListener(listener)
            futures[pool.submit(_guarded, split, name, functools.partial(fn, counter))] = counter
        for future in concurrent.futures.as_completed(futures):
            outcome = future.result()
            outcomes.append(outcome)
            if outcome.status != "failed":
                listener.bytes_settled(outcome.size - futures[future].received)
            listener.file_finished(outcome)
    order = {split: i for i, split in enumerate(layout.SPLITS)}
    outcomes.sort(key=lambda o: (order[o.split], o.name))
    write_manifests(config)
    return DownloadReport(outcomes)


def write_manifests(config: DownloadConfig) -> None:
    """Rewrites each split's `download_manifest.json` from its records, when they changed.

    Run once the downloads of a run have ended, by the one process that started them.
    """
    for split in layout.SPLITS:
        fs, split_dir = _split_dir(config, split)
        if fs.exists(split_dir):
            SplitManifest(fs, split_dir, split).write_summary(config.base_url)


class _CountingListener(SilentProgress):
    """Passes one file's bytes on, counting them: the bar settles each file at its size."""

    def __init__(self, listener: ProgressListener) -> None:
        self._listener = listener
        self.received = 0

    def bytes_received(self, count: int) -> None:
        self.received += count
        self._listener.bytes_received(count)


def _guarded(split: str, name: str, fn: Callable[[], FileOutcome]) -> FileOutcome:
    """Runs one file's work; a failure becomes a failed outcome naming the file."""
    try:
        return fn()
    except (DownloadError, OSError) as error:
        return FileOutcome(split, name, "failed", error=str(error))
