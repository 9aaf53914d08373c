"""The `train` step as a Prefect task: retried after a crash, it resumes from its checkpoint."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import posixpath
import time
import uuid
from typing import Any
from uuid import UUID

import tensorflow as tf
from prefect import task
from prefect.artifacts import (
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from delf_core import storage
from delf_core.training.config import MANIFEST_NAME as BUILD_MANIFEST_NAME
from delf_core.training.config import TrainConfig
from delf_core.training.loop import MANIFEST_NAME, ReportCallback, TrainResult, train
from flows.caching import OutputsStandCache
from flows.summary import format_duration, publish_summary

log = logging.getLogger(__name__)
PROGRESS_KEY = "gldv2-train-progress"


# Written in the logdir when a run starts: which data it trains on, and a token of the
# run that later steps (export) key on, so that a model trained again is exported again.
RUN_NAME = "train_run.json"
# A logdir of a run on other data is kept here (one generation) rather than deleted.
PREVIOUS_SUFFIX = ".previous"


def data_id(config: TrainConfig) -> str | None:
    """Which build of the TFRecords `config` reads: its input fingerprint and when it was
    written, from the build's manifest beside the train shards (None without one).

    Read from the files, not from the build step's cached result: that result may be
    a record of an earlier build of the same inputs.
    """
    folder = posixpath.dirname(config.train_file_pattern)
    fs, path = storage.resolve(storage.join(folder, BUILD_MANIFEST_NAME))
    try:
        manifest = storage.read_json(fs, path)
    except (OSError, ValueError):
        return None
    if not manifest:
        return None
    return f"{manifest.get('fingerprint')}@{manifest.get('built_at')}"


def read_run(logdir: str) -> dict | None:
    fs, path = storage.resolve(storage.join(logdir, RUN_NAME))
    try:
        return storage.read_json(fs, path)
    except (OSError, ValueError):
        return None


def _train_identity(inputs: dict[str, Any]) -> str:
    params = dataclasses.asdict(inputs["config"])
    return json.dumps({**params, "data": data_id(inputs["config"])}, sort_keys=True)


def _train_stands(inputs: dict[str, Any]) -> bool:
    """The logdir holds a finished run of these very parameters, on this very data."""
    config: TrainConfig = inputs["config"]
    path = os.path.join(config.logdir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        return False
    with tf.io.gfile.GFile(path) as handle:
        manifest = json.load(handle)
    run = read_run(config.logdir) or {}
    return (
        manifest.get("params") == json.loads(json.dumps(dataclasses.asdict(config)))
        and manifest.get("global_step", 0) >= config.max_iters
        and run.get("data") == data_id(config)
    )


def start_run(logdir: str, data: str | None) -> dict:
    """Records the run in `logdir`; a logdir of other data moves to `<logdir>.previous`.

    A run on the same data (a crash, a retry, more steps) is resumed from its checkpoint.
    """
    run = read_run(logdir)
    if run is not None and run.get("data") == data:
        return run
    fs, path = storage.resolve(logdir)
    if run is not None:
        previous = path.rstrip("/") + PREVIOUS_SUFFIX
        if fs.exists(previous):
            fs.rm(previous, recursive=True)
        fs.mv(path, previous, recursive=True)
        log.info("train: %s held a run on other data; moved to %s", logdir, previous)
    run = {"data": data, "run": uuid.uuid4().hex}
    fs.makedirs(path, exist_ok=True)
    storage.write_json(fs, storage.join(path, RUN_NAME), run)
    return run


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
    """The `gldv2-train-summary` artifact: steps, rate, logdir and the last metrics."""
    rate = result.metrics.get("global_steps_per_sec")
    publish_summary(
        "train",
        {
            "final step": f"{result.step} of {flags.max_iters}",
            "resumed from": result.resumed_from,
            "images/s": "n/a" if rate is None else f"{rate * flags.batch_size:.1f}",
            "logdir": f"`{flags.logdir}`",
            # The rate is shown as images/s above.
            **{k: v for k, v in result.metrics.items() if k != "global_steps_per_sec"},
        },
        started=started,
        notes=["the run was already finished: nothing trained"] if result.already_done else (),
    )


def _worth_retrying(task, task_run, state) -> bool:
    # A crash (preemption, out of memory) may pass; bad flags or bad records
    # (RecordsError, LabelOutOfRangeError: ValueErrors) fail the same way every time.
    error = state.result(raise_on_failure=False)
    return not isinstance(error, ValueError)


@task(
    name="train",
    task_run_name="train",
    cache_policy=OutputsStandCache(
        identity=_train_identity, outputs_stand=_train_stands, prefix="train"
    ),
    # A crash (preemption, out of memory) is retried; the retry restores the checkpoint.
    retries=2,
    retry_delay_seconds=60,
    retry_condition_fn=_worth_retrying,
)
def train_task(config: TrainConfig) -> dict:
    """Trains (or resumes) `config`; shows progress, then the metrics and a summary.

    A new build of the TFRecords it reads trains a new model.
    """
    started = time.monotonic()
    start_run(config.logdir, data_id(config))
    flags = config.debugged()  # --debug changes the batch size and the step count
    result = train(config, on_report=training_progress(flags.batch_size))
    rows = [{"metric": name, "value": round(value, 5)} for name, value in result.metrics.items()]
    rows.append({"metric": "global_step", "value": result.step})
    create_table_artifact(rows, key="delf-training", description="metrics at the last step")
    publish_train_summary(flags, result, started)
    return {"step": result.step, "resumed_from": result.resumed_from, "metrics": result.metrics}
