"""The `train` step as a Prefect task: retried after a crash, it resumes from its checkpoint."""

from __future__ import annotations

import logging
import time
from uuid import UUID

from prefect import task
from prefect.artifacts import (
    create_progress_artifact,
    update_progress_artifact,
)

from delf_core.training.config import TrainConfig
from delf_core.training.outputs import ReportCallback, TrainResult
from delf_core.training.run_record import train_identity, train_is_current, train_recorded
from flows.caching import OutputsStandCache
from flows.retries import unless_bad_input
from flows.run_summary import COUNTED
from flows.summary import artifact_key, format_duration, publish_summary

log = logging.getLogger(__name__)
PROGRESS_KEY = artifact_key("train", "progress")


def training_progress(batch_size: int) -> ReportCallback:
    """A `train` callback that shows the run as the progress artifact `gldv2-train-progress`.

    The artifact is made at the loop's first call, at the step training starts from, so
    a resumed run (a retried task) starts where its checkpoint left off.
    """
    artifact: list[UUID] = []

    def report(step: int, max_iters: int, metrics: dict[str, float]) -> None:
        percent = 100.0 * step / max(max_iters, 1)
        description = f"step {step}/{max_iters}"
        if "loss/total" in metrics:
            rate = metrics.get("global_steps_per_sec", 0.0)
            description += f", loss {metrics['loss/total']:.4f}, {rate * batch_size:.1f} images/s"
            if rate > 0:
                description += f", ETA {format_duration((max_iters - step) / rate)}"
        try:
            if not artifact:
                artifact.append(create_progress_artifact(percent, PROGRESS_KEY, description))
            else:
                update_progress_artifact(artifact[0], percent, description)
        except Exception:  # progress is for show: a server hiccup must not stop training
            log.warning("train: could not update the progress artifact", exc_info=True)

    return report


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
def train_task(config: TrainConfig) -> dict:
    """Trains (or resumes) `config`; shows progress, then the metrics and a summary.

    A new build of the TFRecords it reads trains a new model (see `train_recorded`).
    """
    started = time.monotonic()
    flags = config.debugged()  # --debug changes the batch size and the step count
    result = train_recorded(config, on_report=training_progress(flags.batch_size))
    publish_train_summary(flags, result, started)
    return {"step": result.step, "resumed_from": result.resumed_from, "metrics": result.metrics}
