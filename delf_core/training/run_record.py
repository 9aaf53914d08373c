"""The record of a training run: which data it trains on, and whether its logdir is current.

`delf train` and the flow's train task both go through `train_recorded`, so a run by
hand resumes, starts over on new data, or finds itself finished exactly as the flow does.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import posixpath
import uuid

from delf_core import manifests, storage
from delf_core.build_image_dataset.report import MANIFEST_NAME as BUILD_MANIFEST_NAME
from delf_core.training.config import TrainConfig
from delf_core.training.outputs import MANIFEST_NAME, ReportCallback, StepsCallback, TrainResult

log = logging.getLogger(__name__)
# Written in the logdir when a run starts: which data it trains on, and a token of the
# run that later steps (export) key on, so that a model trained again is exported again.
RUN_NAME = "train_run.json"


def data_id(config: TrainConfig) -> str | None:
    """Which build of the TFRecords `config` reads: its input fingerprint and when it was
    written, from the build's manifest beside the train shards (None without one).

    Read from the files, not from the build step's cached result: that result may be
    a record of an earlier build of the same inputs.
    """
    folder = posixpath.dirname(config.train_file_pattern)
    manifest = manifests.read_json(storage.join(folder, BUILD_MANIFEST_NAME))
    if not manifest:
        return None
    return f"{manifest.get('fingerprint')}@{manifest.get('built_at')}"


def read_run(logdir: str) -> dict | None:
    """The run recorded in `logdir`, or None."""
    return manifests.read_json(storage.join(logdir, RUN_NAME))


def train_identity(config: TrainConfig) -> str:
    """What a finished run of `config` is: its parameters and the data it trains on."""
    params = dataclasses.asdict(config)
    return json.dumps({**params, "data": data_id(config)}, sort_keys=True)


def train_is_current(config: TrainConfig) -> bool:
    """The logdir holds a finished run of these very parameters, on this very data."""
    manifest = manifests.read_json(storage.join(config.logdir, MANIFEST_NAME))
    if not manifest:
        return False
    run = read_run(config.logdir) or {}
    return (
        manifest.get("params") == json.loads(json.dumps(dataclasses.asdict(config)))
        and manifest.get("global_step", 0) >= config.max_iters
        and run.get("data") == data_id(config)
    )


def start_run(logdir: str, data: str | None) -> dict:
    """Records the run in `logdir`; a logdir of other data moves to `<logdir>.previous`.

    A run on the same data (a crash, a retry, more steps) is resumed from its checkpoint.
    A logdir with no record (made before runs were recorded) is resumed too.
    """
    run = read_run(logdir)
    if run is not None and run.get("data") == data:
        return run
    if run is not None:
        previous = manifests.set_aside(logdir)
        log.info("train: %s held a run on other data; moved to %s", logdir, previous)
    run = {"data": data, "run": uuid.uuid4().hex}
    fs, path = storage.resolve(logdir)
    fs.makedirs(path, exist_ok=True)
    manifests.write_json(storage.join(logdir, RUN_NAME), run)
    return run


def _start_run_of_worker(logdir: str, data: str | None) -> None:
    """`start_run` under several workers: only the chief writes, and nothing is moved.

    Every worker restores the logdir's checkpoint, so moving it while they start would
    race: a logdir of other data is an error on every worker alike, before any of them
    waits for the others.
    """
    from delf_core.training.distribute import worker_role

    run = read_run(logdir)
    if run is not None and run.get("data") != data:
        raise ValueError(
            f"--logdir={logdir} holds a run on other data; with several workers, "
            "remove it or choose another logdir"
        )
    if run is None and worker_role()[1]:
        start_run(logdir, data)


def train_recorded(
    config: TrainConfig,
    on_report: ReportCallback | None = None,
    on_steps: StepsCallback | None = None,
) -> TrainResult:
    """Records the run (setting aside a logdir of other data), then trains or resumes.

    Args:
        config: The training flags.
        on_report: See `delf_core.training.loop.train`.
        on_steps: See `delf_core.training.loop.train`.

    Returns:
        The run's result; `already_done` when the logdir was at `max_iters` already.

    Raises:
        ValueError: See `train`; or, under several workers, a logdir of other data.
    """
    # TensorFlow loads here, not on import: deciding that a run is current needs none.
    from delf_core.training.distribute import worker_role
    from delf_core.training.loop import train

    data = data_id(config)
    if worker_role()[0]:
        _start_run_of_worker(config.logdir, data)
    else:
        start_run(config.logdir, data)
    return train(config, on_report=on_report, on_steps=on_steps)
