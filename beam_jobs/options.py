"""The Beam pipeline options both jobs take, the runners they support, and their defaults.

Importing this module does not import Beam: the flow's parameters name the runner.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from apache_beam.options.pipeline_options import PipelineOptions

# Beam 2.68+ makes DirectRunner try Prism first, which downloads a binary at run time:
# offline that fails or hangs. The FnApiRunner is the same local runner without it.
LOCAL_RUNNER = "FnApiRunner"
DASK_RUNNER = "DaskRunner"
# Beam knows no short name for its DaskRunner: `--runner=DaskRunner` names this class.
DASK_RUNNER_PATH = "apache_beam.runners.dask.dask_runner.DaskRunner"
DATAFLOW_RUNNER = "DataflowRunner"
# What the flows accept as a runner name besides a runner's class path.
RUNNERS = (LOCAL_RUNNER, "DirectRunner", DASK_RUNNER, DATAFLOW_RUNNER)
# Runners whose workers see the launcher's disk (a Dask cluster may: a local one does).
LOCAL_DISK_RUNNERS = frozenset({
    LOCAL_RUNNER, "DirectRunner", "direct", "BundleBasedDirectRunner",
    "SwitchingDirectRunner", "PrismRunner", DASK_RUNNER,
})  # fmt: skip
# How long the launcher waits for the Dask scheduler of --dask_client_address.
DASK_CONNECT_SECONDS = 60


def runner_name(runner: str | None) -> str | None:
    """The runner as Beam spells its short name ("DaskRunner" for its class path too)."""
    if runner is None:
        return None
    if runner == DASK_RUNNER_PATH or runner.lower() in ("dask", "daskrunner"):
        return DASK_RUNNER
    return runner


def check_runner(runner: str) -> str:
    """`runner` in Beam's spelling when the jobs support it.

    Raises:
        ValueError: not one of RUNNERS nor a dotted class path, in one line.
    """
    name = runner_name(runner.strip())
    if name in RUNNERS or (name and "." in name):
        return name
    raise ValueError(f"runner {runner!r}: use one of {', '.join(RUNNERS)} or a runner's class path")


def is_dask(runner: str | None) -> bool:
    """Whether `runner` (a short name or class path) is Beam's DaskRunner."""
    return runner_name(runner) == DASK_RUNNER


def dask_defaults(pipeline_args: list[str]) -> list[str]:
    """The DaskRunner flags the jobs need, unless given.

    Beam's DaskRunner turns beam.Reshuffle into nothing and puts 128 elements of a
    beam.Create in one Dask partition, and each partition runs as one task on one
    worker: the jobs' few shard plans (or plan chunks) would all run on one worker.
    A partition per element spreads them. The connection to a given scheduler gets a
    bounded wait, so a wrong address fails instead of hanging.
    """
    given = {arg.split("=", 1)[0] for arg in pipeline_args}
    extra = []
    if not given & {"--dask_npartitions", "--dask_partition_size"}:
        extra.append("--dask_partition_size=1")
    if "--dask_connection_timeout" not in given:
        extra.append(f"--dask_connection_timeout={DASK_CONNECT_SECONDS}")
    return [*pipeline_args, *extra]


def pipeline_options(pipeline_args: list[str]) -> PipelineOptions:
    """Beam options from the leftover flags.

    A local run uses the offline-safe runner with one thread per core, unless told
    otherwise: JPEG decoding and file I/O release the GIL, and threads spare each
    worker process a TensorFlow import (seconds) and start-up. `--runner=DaskRunner`
    names Beam's DaskRunner (see `dask_defaults`).
    """
    from apache_beam.options.pipeline_options import (
        DirectOptions,
        PipelineOptions,
        StandardOptions,
    )

    runner = PipelineOptions(pipeline_args).view_as(StandardOptions).runner
    if is_dask(runner):
        options = PipelineOptions(dask_defaults(pipeline_args))
        options.view_as(StandardOptions).runner = DASK_RUNNER_PATH
        return options
    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner", "direct"):
        standard.runner = LOCAL_RUNNER
    if standard.runner == LOCAL_RUNNER:
        direct = options.view_as(DirectOptions)
        given = {arg.split("=", 1)[0] for arg in pipeline_args}
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = os.cpu_count() or 1
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_threading"
    return options
