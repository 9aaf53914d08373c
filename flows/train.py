"""The `train` step as a Prefect task: retried after a crash, it resumes from its checkpoint."""

from __future__ import annotations

import time
from collections.abc import Callable

from prefect import task

from delf_core.training.cluster_config import ClusterConfig
from delf_core.training.config import TrainConfig
from delf_core.training.outputs import TrainResult
from delf_core.training.run_record import train_identity, train_is_current, train_recorded
from flows.caching import OutputsStandCache
from flows.progress import RunProgress
from flows.retries import unless_bad_input
from flows.run_summary import COUNTED
from flows.summary import publish_summary


class TrainingProgress:
    """The `train` task's progress artifact: steps, recent rate, ETA and the last loss.

    Follows every call of the step function (`on_steps`), so the artifact moves at
    least every 30 s or 1% of the steps, however large `report_interval` is. It starts
    at the step training starts from, so a retried task resumes where its checkpoint
    left off, in the same artifact.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._progress: RunProgress | None = None

    def steps(self, step: int, max_iters: int) -> None:
        if self._progress is None:
            self._progress = RunProgress("train", max_iters, "steps", done=step, clock=self._clock)
            self._progress.finish()
        else:
            self._progress.update(step)

    def report(self, step: int, max_iters: int, metrics: dict[str, float]) -> None:
        if self._progress is not None and "loss/total" in metrics:
            self._progress.note = f"loss {metrics['loss/total']:.4f}"


def publish_train_summary(flags: TrainConfig, result: TrainResult, started: float) -> None:
    """The `gldv2-train` artifact: steps, rate, logdir and TensorBoard command, last metrics."""
    rate = result.metrics.get("global_steps_per_sec")
    publish_summary(
        "train",
        {
            "final step": f"{result.step} of {flags.max_iters}",
            "resumed from": result.resumed_from,
            "images/s": "n/a" if rate is None else f"{rate * flags.batch_size:.1f}",
            "logdir": f"`{flags.logdir}`",
            "TensorBoard": f"`tensorboard --logdir {flags.logdir}`",
            # The rate is shown as images/s above.
            **{k: v for k, v in result.metrics.items() if k != "global_steps_per_sec"},
        },
        started=started,
        notes=["the run was already finished: nothing trained"] if result.already_done else (),
    )


@task(
    name="train",
    tags=["train", "gpu"],
    **COUNTED,
    task_run_name="train",
    cache_policy=OutputsStandCache(
        identity=lambda inputs: train_identity(inputs["config"]),
        outputs_stand=lambda inputs: train_is_current(inputs["config"]),
        prefix="train",
    ),
    # A failure that may pass (out of GPU memory) is retried, from the checkpoint. A
    # killed process is resumed with its whole flow run (flows/healing.py). Tag gpu:
    # `make deploy` limits how many such task runs run at once.
    retries=2,
    retry_delay_seconds=60,
    retry_condition_fn=unless_bad_input,
)
def train_task(config: TrainConfig, cluster: ClusterConfig | None = None) -> dict:
    """Trains (or resumes) `config`; shows progress, then the metrics and a summary.

    A new build of the TFRecords it reads trains a new model (see `train_recorded`).
    With a `cluster` that is `enabled`, one training runs on its Dask workers, one TF
    worker each; the chief's progress and log lines come here. A dead worker fails the
    task (WorkerFailedError), and its retry resumes from the chief's checkpoint.
    """
    started = time.monotonic()
    flags = config.debugged()  # --debug changes the batch size and the step count
    progress = TrainingProgress()
    if cluster is not None and cluster.enabled:
        # Dask loads only here; this process never loads TensorFlow.
        from delf_core.training.dask_training import train_on_dask

        result = train_on_dask(config, cluster, on_report=progress.report, on_steps=progress.steps)
    else:
        result = train_recorded(config, on_report=progress.report, on_steps=progress.steps)
    publish_train_summary(flags, result, started)
    return {"step": result.step, "resumed_from": result.resumed_from, "metrics": result.metrics}
