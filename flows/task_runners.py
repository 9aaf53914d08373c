"""Task runners for fan-outs of I/O-bound tasks: a bounded thread pool, or Dask."""

from __future__ import annotations

import math
import os

from prefect.client.orchestration import get_client
from prefect.task_runners import TaskRunner, ThreadPoolTaskRunner


def download_task_runner(
    max_workers: int,
    dask_address: str | None = None,
    use_dask: bool = False,
    dask_workers: int | None = None,
) -> TaskRunner:
    """The task runner for the download fan-out, running about `max_workers` tasks at once.

    Args:
      max_workers: how many tasks run at a time; Prefect's default thread pool is
        unbounded (one thread per mapped task), so the pool is always sized.
      dask_address: the scheduler of a running Dask cluster (`tcp://host:8786`); its
        workers set the concurrency. Implies `use_dask`.
      use_dask: run on Dask; without an address, on a temporary `distributed.LocalCluster`
        of worker processes that lives as long as the flow run.
      dask_workers: processes of that temporary cluster (default: one per CPU, at most
        `max_workers`); each gets enough threads that all of them together run
        `max_workers` tasks.
    """
    if max_workers < 1:
        raise ValueError(f"max_workers={max_workers}: must be 1 or more")
    if not (use_dask or dask_address):
        return ThreadPoolTaskRunner(max_workers=max_workers)

    # Imported here: dask is only needed when asked for, and takes a second to import.
    from prefect_dask import DaskTaskRunner

    if dask_address:
        return DaskTaskRunner(address=dask_address)
    workers = min(dask_workers or os.cpu_count() or 1, max_workers)
    return DaskTaskRunner(
        cluster_kwargs={
            "n_workers": workers,
            "threads_per_worker": math.ceil(max_workers / workers),
            # Unpacking a tar is largely pure Python: processes unpack side by side.
            "processes": True,
            # Prefect's embedded server is known to this process only: the workers are
            # told where it is (or where PREFECT_API_URL points).
            "env": {"PREFECT_API_URL": str(get_client(sync_client=True).api_url)},
        }
    )
