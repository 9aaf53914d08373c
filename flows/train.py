"""The `train` step as a Prefect task: retried after a crash, it resumes from its checkpoint."""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import tensorflow as tf
from prefect import task
from prefect.artifacts import create_table_artifact

from delf_core.training.config import TrainConfig
from delf_core.training.loop import MANIFEST_NAME, train
from flows.caching import OutputsStandCache


def _train_identity(inputs: dict[str, Any]) -> str:
    return json.dumps(dataclasses.asdict(inputs["config"]), sort_keys=True)


def _train_stands(inputs: dict[str, Any]) -> bool:
    """The logdir holds a finished run of these very parameters."""
    config: TrainConfig = inputs["config"]
    path = os.path.join(config.logdir, MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        return False
    with tf.io.gfile.GFile(path) as handle:
        manifest = json.load(handle)
    return (
        manifest.get("params") == json.loads(_train_identity(inputs))
        and manifest.get("global_step", 0) >= config.max_iters
    )


@task(
    name="train",
    cache_policy=OutputsStandCache(
        identity=_train_identity, outputs_stand=_train_stands, prefix="train"
    ),
    # A crash (preemption, out of memory) is retried; the retry restores the checkpoint.
    retries=2,
    retry_delay_seconds=60,
)
def train_task(config: TrainConfig) -> dict:
    result = train(config)
    rows = [{"metric": name, "value": round(value, 5)} for name, value in result.metrics.items()]
    rows.append({"metric": "global_step", "value": result.step})
    create_table_artifact(rows, key="delf-training", description="metrics at the last step")
    return {"step": result.step, "resumed_from": result.resumed_from, "metrics": result.metrics}
