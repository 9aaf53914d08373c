"""One training on N TF workers (MultiWorkerMirroredStrategy), launched on a Dask cluster.

Each of N Dask workers runs one TF worker (dask_workers.run_tf_worker): a fresh process
whose TF_CONFIG names every worker's host and a port picked on that host; worker 0 is
the chief, which writes the checkpoints, weights, summaries and manifest in the logdir.
Every worker starts from the chief's latest checkpoint, so a run stopped by a dead
worker resumes where the chief last saved when it is started again.

A dead peer leaves the others waiting in a collective, so nothing here waits on them
alone: the launcher follows every TF worker, and the first that ends badly (or whose
Dask worker leaves the cluster) stops the run: the others are killed and one line says
which worker died. Getting started and each step call have their own time limits.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import signal
import time
import uuid
from collections.abc import Iterator

from delf_core.training.cluster_config import ClusterConfig
from delf_core.training.config import TrainConfig
from delf_core.training.dask_workers import free_endpoint, run_tf_worker
from delf_core.training.outputs import ReportCallback, StepsCallback, TrainResult
from delf_core.training.worker_main import config_to_json

log = logging.getLogger(__name__)
# How often (seconds) the launcher looks at its workers and their events.
POLL_S = 1.0


class WorkerFailedError(RuntimeError):
    """A TF worker died or failed, its Dask worker left, or the run hung; the run stopped."""


def train_on_dask(
    config: TrainConfig,
    cluster: ClusterConfig,
    on_report: ReportCallback | None = None,
    on_steps: StepsCallback | None = None,
    worker_command: list[str] | None = None,
) -> TrainResult:
    """Trains `config` on the Dask cluster of `cluster`, one TF worker per Dask worker.

    Args:
      config: The training flags; `batch_size` is the global batch, split over workers.
      cluster: Which cluster and how many workers, and the time limits.
      on_report: See `delf_core.training.loop.train`; called here with the chief's
        reports, in this thread.
      on_steps: Likewise, with the chief's steps.
      worker_command: argv of each TF worker (default: the Dask worker's Python running
        `delf_core.training.worker_main`).

    Returns:
      The chief's result.

    Raises:
      ValueError: a bad flag, or input every worker refuses (bad records, a logdir of
        other data).
      WorkerFailedError: a worker died or failed, or the run hit a time limit.
    """
    cluster.validate()
    config.validate()
    with _client(cluster) as client:
        workers = _pick_workers(client, cluster)
        endpoints = _endpoints(client, workers, cluster.start_timeout)
        return _run(
            client, config, cluster, workers, endpoints, on_report, on_steps, worker_command
        )


@contextlib.contextmanager
def _client(cluster: ClusterConfig) -> Iterator:
    """A client of the cluster at `dask_address`, or of a local cluster made for the run."""
    from distributed import Client, LocalCluster

    if cluster.dask_address is None:
        with (
            LocalCluster(
                n_workers=cluster.num_workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",
            ) as local,
            Client(local, set_as_default=False) as client,
        ):
            yield client
        return
    try:
        client = Client(cluster.dask_address, timeout=cluster.start_timeout, set_as_default=False)
    except OSError as error:
        raise WorkerFailedError(
            f"train: no Dask scheduler answered at {cluster.dask_address} within "
            f"{cluster.start_timeout:g} s ({error})"
        ) from None
    with client:
        yield client


def _pick_workers(client, cluster: ClusterConfig) -> list[str]:
    """The addresses of the Dask workers that run the TF workers, the chief's first."""
    wanted = cluster.num_workers or 1
    try:
        client.wait_for_workers(wanted, timeout=cluster.start_timeout)
    except TimeoutError:
        have = len(client.nthreads())
        raise WorkerFailedError(
            f"train: the Dask cluster at {client.scheduler.address} has {have} workers; "
            f"--num_workers={wanted} needs {wanted} (waited {cluster.start_timeout:g} s)"
        ) from None
    workers = sorted(client.nthreads())
    return workers[: cluster.num_workers] if cluster.num_workers else workers


def _endpoints(client, workers: list[str], timeout: float) -> list[str]:
    """`host:port` of each worker's TF worker, a port picked on its own host."""
    futures = [
        client.submit(free_endpoint, workers=[w], allow_other_workers=False, pure=False)
        for w in workers
    ]
    deadline = time.monotonic() + timeout
    try:
        return [f.result(timeout=max(deadline - time.monotonic(), 0)) for f in futures]
    except TimeoutError:
        raise WorkerFailedError(
            f"train: the Dask workers did not pick ports within {timeout:g} s"
        ) from None
    finally:
        client.cancel(futures)


def _tf_config(endpoints: list[str], index: int) -> str:
    return json.dumps(
        {"cluster": {"worker": endpoints}, "task": {"type": "worker", "index": index}}
    )


def _run(client, config, cluster, workers, endpoints, on_report, on_steps, command):
    from distributed import Event

    run = uuid.uuid4().hex[:12]
    topic, stop = f"delf-train-{run}", Event(f"delf-train-stop-{run}", client=client)
    events: queue.Queue = queue.Queue()
    # Called in the client's event loop: only queued, and handled in this thread, which
    # is the one that logs into the caller's (the Prefect task run's) log.
    client.subscribe_topic(topic, lambda event: events.put(event[1]))
    config_json = config_to_json(config)
    log.info(
        "train: %d TF workers on %s: %s",
        len(workers),
        client.scheduler.address,
        ", ".join(
            f"{i}: {w} (TF {e})" for i, (w, e) in enumerate(zip(workers, endpoints, strict=True))
        ),
    )
    futures = [
        client.submit(
            run_tf_worker,
            {
                "index": index,
                "tf_config": _tf_config(endpoints, index),
                "config": config_json,
                "topic": topic,
                "stop": stop.name,
                "command": command,
            },
            workers=[address],
            allow_other_workers=False,
            pure=False,
            key=f"delf-tf-worker-{index}-{run}",
        )
        for index, address in enumerate(workers)
    ]
    follower = _Follower(events, on_report, on_steps)
    try:
        outcomes = _watch(client, futures, workers, cluster, follower)
    finally:
        stop.set()  # every TF worker still running is killed
        client.cancel(futures)
        client.unsubscribe_topic(topic)
    return _result(outcomes, workers)


class _Follower:
    """Hands the chief's events to the callbacks and its log lines to the log."""

    def __init__(self, events: queue.Queue, on_report, on_steps) -> None:
        self.events, self.on_report, self.on_steps = events, on_report, on_steps
        self.handled = 0
        self.last_step_at: float | None = None

    def drain(self) -> None:
        """Handles the events that have come."""
        while True:
            try:
                self._handle(self.events.get_nowait())
            except queue.Empty:
                return

    def wait_for(self, count: int, timeout: float, quiet: bool = False) -> None:
        """Handles events until `count` have come, or `timeout` passed (logged unless
        `quiet`): those the chief sent before it ended, or the next one."""
        deadline = time.monotonic() + timeout
        while self.handled < count:
            left = deadline - time.monotonic()
            if left <= 0:
                if quiet:
                    return
                log.warning("train: %d of the chief's events never came", count - self.handled)
                return
            with contextlib.suppress(queue.Empty):
                self._handle(self.events.get(timeout=min(POLL_S, left)))

    def _handle(self, event: dict) -> None:
        self.handled += 1
        kind = event["event"]
        if kind == "log":
            log.info("chief: %s", event["line"])
        elif kind == "steps":
            self.last_step_at = time.monotonic()
            if self.on_steps is not None:
                self.on_steps(event["step"], event["max_iters"])
        elif kind == "report" and self.on_report is not None:
            self.on_report(event["step"], event["max_iters"], event["metrics"])


def _watch(client, futures, workers, cluster: ClusterConfig, follower: _Follower) -> list[dict]:
    """Follows the TF workers until all end; raises at the first that ends badly."""
    started = time.monotonic()
    outcomes: dict[int, dict] = {}
    pending = list(futures)
    while pending:
        # Waits on the chief's events, so they are handled as they come.
        follower.wait_for(follower.handled + 1, timeout=POLL_S, quiet=True)
        follower.drain()
        for future in [f for f in pending if f.done()]:
            pending.remove(future)
            index = futures.index(future)
            if future.status == "error":
                raise WorkerFailedError(
                    f"train: TF worker {index} of {len(workers)} on Dask worker "
                    f"{workers[index]} failed to run: {_one_line(future.exception())}"
                )
            outcome = future.result()
            outcomes[index] = outcome
            _raise_if_failed(outcome, workers)
        if pending:
            _check_cluster(client, futures, pending, workers)
            _check_time(follower, started, cluster)
    chief = outcomes[0]
    follower.wait_for(chief["events"], timeout=cluster.start_timeout)
    return [outcomes[i] for i in range(len(workers))]


def _raise_if_failed(outcome: dict, workers: list[str]) -> None:
    if outcome["bad_input"] is not None:
        raise ValueError(outcome["bad_input"]["message"])
    code = outcome["returncode"]
    if code == 0 and outcome["result"] is not None:
        return
    index = outcome["index"]
    how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
    last = next((line for line in reversed(outcome["tail"]) if line.strip()), "no output")
    raise WorkerFailedError(
        f"train: TF worker {index} of {len(workers)} on Dask worker {workers[index]} died "
        f"({how}); last line: {last.strip()[:300]}; the run stopped at the chief's last "
        "checkpoint, run it again to resume"
    )


def _check_cluster(client, futures, pending, workers: list[str]) -> None:
    """Raises when the Dask worker of a running TF worker has left the cluster."""
    # Asked of the scheduler each time: scheduler_info() may answer from a cache
    # that lists no workers.
    present = client.nthreads()
    for future in pending:
        index = futures.index(future)
        if workers[index] not in present:
            raise WorkerFailedError(
                f"train: the Dask worker {workers[index]} of TF worker {index} of "
                f"{len(workers)} left the cluster; the run stopped at the chief's last "
                "checkpoint, run it again to resume"
            )


def _check_time(follower: _Follower, started: float, cluster: ClusterConfig) -> None:
    now = time.monotonic()
    if follower.last_step_at is None and now - started > cluster.start_timeout:
        raise WorkerFailedError(
            f"train: the chief did not start training within --start_timeout="
            f"{cluster.start_timeout:g} s; the TF workers were stopped"
        )
    if follower.last_step_at is not None and now - follower.last_step_at > cluster.stall_timeout:
        raise WorkerFailedError(
            f"train: no step finished for --stall_timeout={cluster.stall_timeout:g} s; "
            "the TF workers were stopped as hung"
        )


def _result(outcomes: list[dict], workers: list[str]) -> TrainResult:
    """The chief's result, once every worker is seen to end at the same step."""
    results = [o["result"] for o in outcomes]
    steps = {r["step"] for r in results}
    if len(steps) != 1 or len({r["resumed_from"] for r in results}) != 1:
        raise WorkerFailedError(
            "train: the TF workers ended out of step: "
            + ", ".join(
                f"{i} ({w}) step {r['step']} from {r['resumed_from']}"
                for i, (w, r) in enumerate(zip(workers, results, strict=True))
            )
        )
    chief = results[0]
    return TrainResult(
        step=chief["step"],
        metrics=chief["metrics"],
        resumed_from=chief["resumed_from"],
        already_done=chief["already_done"],
        history=tuple(chief["history"]),
    )


def _one_line(error: BaseException | None) -> str:
    text = f"{type(error).__name__}: {error}"
    return " ".join(text.split())[:300]
