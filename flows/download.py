"""The `download` step as a Prefect flow: one mapped task per tar, cached on its URL and md5."""

from __future__ import annotations

import contextlib
import dataclasses
import time
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.context import FlowRunContext
from prefect.futures import as_completed
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from delf_core import storage
from delf_core.download import (
    ChecksumMismatchError,
    DownloadConfig,
    DownloadError,
    PermanentHTTPError,
    TarJob,
    UnsafeTarError,
    download_metadata_file,
    download_tar,
    fetch_checksums,
    plan_jobs,
    write_manifests,
)
from delf_core.download.manifest import SplitManifest
from delf_core.download.sizes import planned_sizes
from delf_core.gldv2 import layout
from delf_core.progress import format_bytes
from flows.caching import OutputsStandCache
from flows.progress import RunProgress
from flows.run_summary import COUNTED
from flows.summary import capped, publish_summary
from flows.task_runners import download_task_runner

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
    # The published md5 names the content; where it came from (a mirror, a port) does not.
    tar = layout.tar_bucket_path(job.split, job.index)
    return f"{tar}|{inputs['expected_md5']}|{config.output_dir}|delete_tars={config.delete_tars}"


def _tar_stands(inputs: dict[str, Any]) -> bool:
    """The split's manifest records this tar, with the published md5, as unpacked."""
    config: DownloadConfig = inputs["config"]
    job: TarJob = inputs["job"]
    fs, root = storage.resolve(config.output_dir)
    entry = SplitManifest(fs, storage.join(root, job.split), job.split).tar_entry(job.name)
    return entry is not None and entry["md5"] == inputs["expected_md5"]


@task(
    name="download_metadata",
    tags=["download"],
    **COUNTED,
    **_RETRIES,
    task_run_name="download_metadata-{split}-{remote.name}",
)
def download_metadata(config: DownloadConfig, split: str, remote: layout.RemoteFile) -> dict:
    return dataclasses.asdict(download_metadata_file(config, split, remote))


@task(
    name="fetch_checksums",
    tags=["download"],
    **COUNTED,
    **_RETRIES,
    task_run_name="fetch_checksums-{split}",
)
def checksums(config: DownloadConfig, split: str) -> dict[str, str]:
    return fetch_checksums(config, split)


@task(
    name="download",
    tags=["download"],
    **COUNTED,
    cache_policy=OutputsStandCache(
        identity=_tar_identity, outputs_stand=_tar_stands, prefix="download"
    ),
    **_RETRIES,
    task_run_name="download-{job.split}-{job.name}",
)
def download_one_tar(config: DownloadConfig, job: TarJob, expected_md5: str) -> dict:
    return dataclasses.asdict(download_tar(config, job, expected_md5=expected_md5))


class _DownloadProgress:
    """The `gldv2-download-progress` artifact: bytes of the files done, of their true total.

    The total is the files' size from their records or the server (HEAD); a file counts
    at its size when its task ends, wherever it ran.
    """

    def __init__(self, config: DownloadConfig, files: int) -> None:
        sizes = planned_sizes(config)
        total = None if None in sizes.values() else sum(sizes.values())
        self._files, self._done = files, 0
        self._progress = RunProgress("download", total, "bytes")
        self._progress.note = f"0/{files} files"
        self._progress.finish()

    def file_finished(self, future) -> None:
        self._done += 1
        self._progress.note = f"{self._done}/{self._files} files"
        future.wait()  # sets the final state: before, `state` may read a stale one
        if future.state.is_completed():
            self._progress.advance(future.result()["size"])
        if self._done == self._files:
            self._progress.finish()


# The runner of a direct call. It cannot know the call's `max_workers`, so a flow run on
# it fans out on a pool of its own; a runner given with `with_options` is used as is.
_DEFAULT_RUNNER = ThreadPoolTaskRunner()


def _fan_out_runner(max_workers: int) -> contextlib.AbstractContextManager[TaskRunner]:
    context = FlowRunContext.get()
    if context.flow.task_runner is _DEFAULT_RUNNER:
        return download_task_runner(max_workers)
    return contextlib.nullcontext(context.task_runner)


@flow(name="download", log_prints=False, task_runner=_DEFAULT_RUNNER)
def download(config: DownloadConfig) -> dict[str, Any]:
    """Downloads GLDv2 tars, md5 files and CSVs; fails, naming each bad file, if any failed.

    Files download as mapped tasks, at most `config.max_workers` at a time on a thread
    pool, or on the task runner given with `with_options` (see `run_download`). A rerun
    skips tars that are verified and unpacked; they show as Cached.
    """
    started = time.monotonic()
    config.validate()
    metadata = [
        (split, remote) for split in layout.SPLITS for remote in layout.METADATA_FILES[split]
    ]
    failures: list[str] = []
    with _fan_out_runner(config.max_workers) as runner:
        # The CSVs download while the md5 files are read.
        metadata_futures = runner.map(
            download_metadata,
            {
                "config": unmapped(config),
                "split": [split for split, _ in metadata],
                "remote": [remote for _, remote in metadata],
            },
        )
        digests: dict[str, dict[str, str]] = {}
        for split in layout.SPLITS:
            if config.tar_counts()[split]:
                try:
                    digests[split] = checksums(config, split)
                except DownloadError as error:
                    failures.append(f"{split} md5 files: {error}")
        jobs = [job for job in plan_jobs(config) if job.split in digests]
        tar_futures = runner.map(
            download_one_tar,
            {
                "config": unmapped(config),
                "job": jobs,
                "expected_md5": [digests[job.split][job.name] for job in jobs],
            },
        )
        progress = _DownloadProgress(config, len(metadata) + len(jobs))
        for future in as_completed([*metadata_futures, *tar_futures]):
            progress.file_finished(future)
    # Tasks (maybe in other processes) wrote one record per file; the summary is made here.
    write_manifests(config)

    files = [("download_metadata", split, remote.name) for split, remote in metadata]
    files += [("download", job.split, job.name) for job in jobs]
    rows = []
    states = []
    for (task_name, split, name), future in zip(
        files, [*metadata_futures, *tar_futures], strict=True
    ):
        future.wait()
        state = future.state
        states.append(state.name)
        if state.is_completed():
            rows.append(future.result())
        else:
            error = state.result(raise_on_failure=False)
            # The task's name too: the UI and `prefect task-run ls` list runs by it.
            failures.append(f"{split}/{name}: {error} [task {task_name}-{split}-{name}]")
            rows.append({"split": split, "name": name, "status": "failed", "error": str(error)})
    summary = {
        "files": len(rows),
        "tars": len(jobs),
        "images": sum(r.get("images", 0) for r in rows),
        "bytes": sum(r.get("size", 0) for r in rows),
        # Cached: Prefect found the task's cache key, so its body did not run.
        "cached": states.count("Cached"),
        "ran": states.count("Completed"),
        "failed": len(failures),
    }
    publish_summary(
        "download",
        {**summary, "bytes": format_bytes(summary["bytes"])},
        started=started,
        notes=capped(failures, len(failures)),
        table=rows,
    )
    if failures:
        raise DownloadError(f"{len(failures)} failed: " + "; ".join(failures))
    get_run_logger().info("download finished: %s", summary)
    return summary


def run_download(
    config: DownloadConfig,
    *,
    use_dask: bool = False,
    dask_address: str | None = None,
    dask_workers: int | None = None,
    return_state: bool = False,
) -> Any:
    """Runs the `download` flow on the task runner picked here.

    A bounded thread pool of `config.max_workers` by default; Dask with `use_dask` (a
    temporary local cluster of `dask_workers` processes) or `dask_address` (a running
    cluster). Returns the flow's summary, or its final state with `return_state=True`.
    """
    runner = download_task_runner(config.max_workers, dask_address, use_dask, dask_workers)
    return download.with_options(task_runner=runner)(config, return_state=return_state)
