"""Running a job's pipeline to its end on its runner, Beam's DaskRunner included.

Beam's DaskRunner (2.77) connects a `dask.distributed.Client` to
`--dask_client_address` and leaves it open after the job; without an address it
starts a LocalCluster that stays up as long as the process. The jobs instead check
a given scheduler answers before touching any output, start a LocalCluster of worker
processes for the job when no address is given, and close both when the job ends,
so a long-lived process (a flow's worker) does not gather clusters run after run.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_jobs.options import is_dask

log = logging.getLogger(__name__)


class DaskClusterError(ConnectionError):
    """The Dask scheduler of --dask_client_address did not answer; one line."""


@contextlib.contextmanager
def dask_cluster(options: PipelineOptions) -> Iterator[None]:
    """While open, the DaskRunner of `options` has a scheduler; other runners: nothing.

    A given `--dask_client_address` is tried first, within `--dask_connection_timeout`
    seconds. Without one (nor `--dask_scheduler_file`), a LocalCluster of one
    single-threaded worker process per core serves the job and is closed after it.

    Raises:
        DaskClusterError: no scheduler answered at the address in time.
    """
    if not is_dask(options.view_as(StandardOptions).runner):
        yield
        return
    from apache_beam.runners.dask.dask_runner import DaskOptions
    from distributed import Client, LocalCluster

    dask = options.view_as(DaskOptions)
    if dask.address or dask.scheduler_file:
        where = dask.address or f"the scheduler file {dask.scheduler_file}"
        try:
            Client(dask.address, scheduler_file=dask.scheduler_file, timeout=dask.timeout).close()
        except (OSError, TimeoutError, ValueError) as error:
            raise DaskClusterError(
                f"--dask_client_address {where}: no Dask scheduler answered within "
                f"{dask.timeout} s ({type(error).__name__}); start the cluster or fix the "
                "address (--dask_connection_timeout sets the wait)"
            ) from error
        log.info("DaskRunner: the job runs on the Dask cluster at %s", where)
        yield
        return
    # Worker processes, not threads: each loads its own model and decodes JPEGs apart.
    cluster = LocalCluster(processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        log.info(
            "DaskRunner: no --dask_client_address; a local Dask cluster of %d worker "
            "processes runs the job",
            len(cluster.workers),
        )
        dask.address = cluster.scheduler_address
        yield
    finally:
        dask.address = None
        cluster.close()


def run_and_wait(pipeline: beam.Pipeline) -> beam.runners.runner.PipelineResult:
    """Runs `pipeline` and waits for its end; a DaskRunner's client is closed after."""
    result = pipeline.run()
    try:
        result.wait_until_finish()
    finally:
        client = getattr(result, "client", None)  # DaskRunnerResult's, left open by Beam
        if client is not None:
            client.close()
    return result


def job_counters(result: beam.runners.runner.PipelineResult, namespace: str) -> dict[str, int]:
    """The job's counters in `namespace`, by name; {} where the runner keeps none.

    Beam's DaskRunner collects no metrics (its result's metrics() raises): the jobs'
    outputs and manifests carry their counts, not the counters.
    """
    try:
        query = result.metrics().query(MetricsFilter().with_namespace(namespace))
    except NotImplementedError:
        return {}
    return {counter.key.metric.name: counter.committed for counter in query["counters"]}
