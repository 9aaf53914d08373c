"""The `download` step as a Prefect flow: one task per tar, cached on its URL and md5."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)
from prefect.futures import as_completed
from prefect.tasks import exponential_backoff

from delf_core import storage
from delf_core.download import (
    ChecksumMismatchError,
    DownloadConfig,
    DownloadError,
    PermanentHTTPError,
    RetryPolicy,
    TarJob,
    UnsafeTarError,
    download_metadata_file,
    download_tar,
    fetch_checksums,
    plan_jobs,
)
from delf_core.download.manifest import SplitManifest
from delf_core.gldv2 import layout
from flows.caching import OutputsStandCache

# Errors that another attempt cannot fix; the rest get Prefect's retries on top of the
# per-request retries inside delf_core.
_PERMANENT = (PermanentHTTPError, UnsafeTarError, ChecksumMismatchError)


def _worth_retrying(task, task_run, state) -> bool:
    error = state.result(raise_on_failure=False)
    return not isinstance(error, _PERMANENT)


# Prefect's retries, on top of the per-request ones inside delf_core: 5 s, 10 s, jittered.
_RETRIES = dict(
    retries=2,
    retry_delay_seconds=exponential_backoff(backoff_factor=5),
    retry_jitter_factor=0.5,
    retry_condition_fn=_worth_retrying,
)


def _tar_identity(inputs: dict[str, Any]) -> str:
    config: DownloadConfig = inputs["config"]
    job: TarJob = inputs["job"]
    url = layout.join_url(config.base_url, layout.tar_bucket_path(job.split, job.index))
    return f"{url}|{inputs['expected_md5']}|{config.output_dir}|delete_tars={config.delete_tars}"


def _tar_stands(inputs: dict[str, Any]) -> bool:
    """The split's manifest records this tar, with the published md5, as unpacked."""
    config: DownloadConfig = inputs["config"]
    job: TarJob = inputs["job"]
    fs, root = storage.resolve(config.output_dir)
    entry = SplitManifest(fs, storage.join(root, job.split), job.split).tar_entry(job.name)
    return entry is not None and entry["md5"] == inputs["expected_md5"]


@task(
    name="download_metadata",
    **_RETRIES,
    task_run_name="download_metadata-{split}-{remote.name}",
)
def download_metadata(config: DownloadConfig, split: str, remote: layout.RemoteFile) -> dict:
    return dataclasses.asdict(download_metadata_file(config, split, remote))


@task(
    name="fetch_checksums",
    **_RETRIES,
    task_run_name="fetch_checksums-{split}",
)
def checksums(config: DownloadConfig, split: str) -> dict[str, str]:
    return fetch_checksums(config, split)


@task(
    name="download",
    cache_policy=OutputsStandCache(
        identity=_tar_identity, outputs_stand=_tar_stands, prefix="download"
    ),
    **_RETRIES,
    task_run_name="download-{job.split}-{job.name}",
)
def download_one_tar(config: DownloadConfig, job: TarJob, expected_md5: str) -> dict:
    return dataclasses.asdict(download_tar(config, job, expected_md5=expected_md5))


@flow(name="download_gldv2", log_prints=False)
def download_gldv2(
    num_train: int,
    num_index: int,
    num_test: int,
    output_dir: str = "gldv2_dataset",
    base_url: str = layout.DEFAULT_BASE_URL,
    max_workers: int = 8,
    delete_tars: bool = False,
    retries: int = 5,
    backoff_seconds: float = 1.0,
) -> dict[str, Any]:
    """Downloads GLDv2 tars, md5 files and CSVs; fails, naming each bad file, if any failed.

    Tasks run at most `max_workers` at a time. A rerun skips tars that are verified and
    unpacked; they show as Cached.
    """
    logger = get_run_logger()
    config = DownloadConfig(
        num_train=num_train,
        num_index=num_index,
        num_test=num_test,
        output_dir=output_dir,
        base_url=base_url,
        max_workers=max_workers,
        delete_tars=delete_tars,
        retry=RetryPolicy(retries=retries, backoff_seconds=backoff_seconds),
    )
    config.validate()
    submitted = [
        (split, remote.name, download_metadata.submit(config, split, remote))
        for split in layout.SPLITS
        for remote in layout.METADATA_FILES[split]
    ]
    failures: list[str] = []
    digests: dict[str, dict[str, str]] = {}
    for split in layout.SPLITS:
        if config.tar_counts()[split]:
            try:
                digests[split] = checksums(config, split)
            except DownloadError as error:
                failures.append(f"{split} md5 files: {error}")
    jobs = [job for job in plan_jobs(config) if job.split in digests]
    progress_id = create_progress_artifact(
        0.0, key="gldv2-download-progress", description="tars verified and unpacked"
    )
    in_flight: set = set()
    finished = 0
    for job in jobs:
        if len(in_flight) >= max_workers:
            in_flight.discard(next(as_completed(list(in_flight))))
            finished += 1
            update_progress_artifact(progress_id, 100.0 * finished / len(jobs))
        future = download_one_tar.submit(config, job, digests[job.split][job.name])
        submitted.append((job.split, job.name, future))
        in_flight.add(future)
    for _ in as_completed(list(in_flight)):
        finished += 1
        update_progress_artifact(progress_id, 100.0 * finished / len(jobs))

    rows = []
    for split, name, future in submitted:
        future.wait()
        state = future.state
        if state.is_completed():
            rows.append(future.result())
        else:
            error = state.result(raise_on_failure=False)
            failures.append(f"{split}/{name}: {error}")
            rows.append({"split": split, "name": name, "status": "failed", "error": str(error)})
    create_table_artifact(rows, key="gldv2-download", description="files of this download")
    if failures:
        raise DownloadError(f"{len(failures)} failed: " + "; ".join(failures))
    summary = {
        "files": len(rows),
        "images": sum(r.get("images", 0) for r in rows),
        "tars": len(jobs),
    }
    logger.info("download finished: %s", summary)
    return summary
