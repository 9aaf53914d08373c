"""The DELF/DELG training loop: distributed custom loop, resumable, with summaries."""

from __future__ import annotations

import dataclasses
import glob
import logging
import os
import shutil
import tempfile
import time
from typing import NoReturn

import keras
import tensorflow as tf

from delf_core import __version__, storage
from delf_core.input_pipeline import create_dataset
from delf_core.model import load_imagenet_weights
from delf_core.progress import ProgressTracker, format_duration
from delf_core.training import summaries
from delf_core.training.config import TrainConfig
from delf_core.training.data_checks import (
    RecordsError,
    check_records,
    read_error,
    resolve_num_classes,
)
from delf_core.training.determinism import op_determinism
from delf_core.training.distribute import make_cluster, shard_by_batch
from delf_core.training.outputs import (
    CHECKPOINT_DIR,
    MANIFEST_NAME,
    WEIGHTS_NAME,
    ReportCallback,
    StepsCallback,
    TrainResult,
)
from delf_core.training.schedule import linear_decay
from delf_core.training.step import build_model_and_optimizer, make_train_step
from delf_core.training.validation import Validation

log = logging.getLogger(__name__)


class LabelOutOfRangeError(ValueError):
    """A record's label is not in [0, num_classes)."""


def train(
    config: TrainConfig,
    on_report: ReportCallback | None = None,
    on_steps: StepsCallback | None = None,
) -> TrainResult:
    """Trains until `max_iters`, resuming from the latest checkpoint in `logdir`.

    Resume order: (1) build the model and optimizer, (2) restore the latest checkpoint
    of `<logdir>/delf_tf2-ckpt` (model, optimizer and its step, hence the learning
    rate), (3) if nothing was restored, load the ImageNet weights, (4) train from the
    restored step. A run already at `max_iters` returns at once.

    Args:
      config: The training flags.
      on_report: Called on the chief with (step, max_iters, metrics): once before the
        first step with the step training starts from and no metrics, then at every
        report with the metrics logged (losses, accuracies, learning_rate,
        global_steps_per_sec, over the recent steps).
      on_steps: Called on the chief with (step, max_iters): once before the first step,
        then after every call of the step function (every `steps_per_loop` steps or
        fewer).

    Raises:
      ValueError: for a bad flag.
      RecordsError: (a ValueError) when a file pattern matches nothing or only empty
        files, a first record is not a GLDv2 example, or a record read later is damaged.
      LabelOutOfRangeError: when a label is outside [0, num_classes).
    """
    config = config.debugged()
    config.validate()
    with op_determinism(config.deterministic):
        return _train(config, on_report, on_steps)


def _train(
    config: TrainConfig, on_report: ReportCallback | None, on_steps: StepsCallback | None
) -> TrainResult:
    # Before any TensorFlow op: a multi-worker strategy must be made first.
    cluster = make_cluster()
    strategy = cluster.strategy
    # The data is checked before the model is built, so a typo fails in seconds.
    check_records(
        "train_file_pattern", config.train_file_pattern, config.image_size, config.use_augmentation
    )
    validation_files = check_records(
        "validation_file_pattern", config.validation_file_pattern, config.image_size, False
    )
    num_classes = resolve_num_classes(config)
    # Seeds Python, NumPy and TensorFlow: the same seed gives the same initial weights.
    keras.utils.set_random_seed(config.seed)

    # ---- Model, optimizer, checkpoint -------------------------------------------------
    model, optimizer = build_model_and_optimizer(config, num_classes, strategy)
    checkpoint = tf.train.Checkpoint(optimizer=optimizer, model=model)
    checkpoint_dir = os.path.join(config.logdir, CHECKPOINT_DIR)
    # Every worker restores the chief's latest checkpoint; each saves (saving runs
    # collectives), but only the chief into the logdir, the others into a throw-away folder.
    manager = tf.train.CheckpointManager(
        checkpoint,
        checkpoint_dir if cluster.is_chief else tempfile.mkdtemp(prefix="delf-worker-"),
        max_to_keep=config.max_checkpoints,
        keep_checkpoint_every_n_hours=3,
    )
    latest = tf.train.latest_checkpoint(checkpoint_dir)
    if latest:
        checkpoint.restore(latest).assert_existing_objects_matched()
    resumed_from = int(optimizer.iterations.numpy())
    if resumed_from >= config.max_iters:
        log.info(
            "train: %s is already at step %d of %d", config.logdir, resumed_from, config.max_iters
        )
        return TrainResult(resumed_from, {}, resumed_from, already_done=True)
    if resumed_from == 0 and config.imagenet_checkpoint:
        load_imagenet_weights(model.backbone, config.imagenet_checkpoint)
        log.info("train: backbone initialised from %s", config.imagenet_checkpoint)
    elif resumed_from:
        log.info("train: resumed from step %d", resumed_from)

    # ---- Data ---------------------------------------------------------------------------
    global_batch = config.batch_size
    train_data = create_dataset(
        config.train_file_pattern,
        config.image_size,
        global_batch,
        augmentation=config.use_augmentation,
        seed=config.seed,
        drop_remainder=True,
        deterministic=config.deterministic,
    )
    if config.deterministic and cluster.num_workers > 1:
        train_data = shard_by_batch(train_data)  # the same batches as on one worker
    iterator = iter(strategy.experimental_distribute_dataset(train_data))
    # Validation images for the summaries; repeating is safe: the split holds a record.
    summary_images = iter(
        create_dataset(
            config.validation_file_pattern,
            config.image_size,
            global_batch,
            augmentation=False,
            seed=config.seed,
            deterministic=config.deterministic,
        )
    )
    validation = Validation(model, config, validation_files)

    # ---- One step -----------------------------------------------------------------------
    train_steps = make_train_step(model, optimizer, strategy, config, num_classes)

    # ---- Loop ---------------------------------------------------------------------------
    writer = summaries.writer(config.logdir, cluster.is_chief)
    step = resumed_from
    began, began_step = time.monotonic(), step
    # The rate over recent steps, the first call (graph tracing) left out.
    progress = ProgressTracker(config.max_iters, "steps", done=step)
    metrics: dict[str, float] = {}
    history: list[dict[str, float]] = []
    report = on_report if cluster.is_chief else None
    steps_done = on_steps if cluster.is_chief else None
    if report is not None:
        report(step, config.max_iters, {})
    if steps_done is not None:
        steps_done(step, config.max_iters)
    while step < config.max_iters:
        try:
            values = train_steps(iterator, tf.constant(_steps_to_run(step, config)))
        except tf.errors.InvalidArgumentError as error:
            if "num_classes" in str(error) or "label below 0" in str(error):
                raise LabelOutOfRangeError(
                    f"a label in {config.train_file_pattern} is outside [0, {num_classes}): "
                    "check --num_classes or --dataset_version"
                ) from None
            _raise_read_error("train_file_pattern", config.train_file_pattern, error)
        except tf.errors.DataLossError as error:
            _raise_read_error("train_file_pattern", config.train_file_pattern, error)
        step = int(optimizer.iterations.numpy())
        progress.update(step)
        if steps_done is not None:
            steps_done(step, config.max_iters)
        if step % config.report_interval == 0 or step == config.max_iters:
            metrics = {name: float(value) for name, value in values.items()}
            rate = progress.rate()
            if rate is None:  # too few calls yet for a recent rate: the mean so far
                rate = (step - began_step) / max(time.monotonic() - began, 1e-9)
            metrics["learning_rate"] = float(
                linear_decay(config.initial_lr, config.max_iters)(step)
            )
            metrics["global_steps_per_sec"] = rate
            try:
                images, _ = next(summary_images)
            except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
                _raise_read_error("validation_file_pattern", config.validation_file_pattern, error)
            summaries.write_step(writer, step, metrics, model, images)
            log.info(
                "train: step %d/%d loss %.4f desc acc %.3f attn acc %.3f lr %.5f; %.2f steps/s, "
                "%.1f images/s, ETA %s",
                step,
                config.max_iters,
                metrics["loss/total"],
                metrics["train_accuracy/desc"],
                metrics["train_accuracy/attn"],
                metrics["learning_rate"],
                rate,
                rate * global_batch,
                format_duration((config.max_iters - step) / max(rate, 1e-9)),
            )
            history.append({"step": step, **metrics})
            if report is not None:
                report(step, config.max_iters, dict(metrics))
        if step % config.eval_interval == 0 or step == config.max_iters:
            validated = validation.run(step)
            metrics.update(validated)
            if history and history[-1]["step"] == step:
                history[-1].update(validated)
            else:
                history.append({"step": step, **validated})
            summaries.write_scalars(writer, step, validated)
        if step % config.save_interval == 0 or step == config.max_iters:
            _save(manager, checkpoint, model, step, config.logdir, cluster.is_chief)
    if cluster.is_chief:
        _write_manifest(config, num_classes, step, metrics, history)
    else:
        shutil.rmtree(manager.directory, ignore_errors=True)
    return TrainResult(step, metrics, resumed_from, history=tuple(history))


def _raise_read_error(flag: str, file_pattern: str, error: tf.errors.OpError) -> NoReturn:
    """Raises the one-line RecordsError for a read of damaged records, else `error`."""
    problem: RecordsError | None = read_error(flag, file_pattern, error)
    if problem is None:
        raise error
    raise problem from None


def _steps_to_run(step: int, config: TrainConfig) -> int:
    """Up to `steps_per_loop` steps, stopping at the next report, eval, save or the end."""
    intervals = (config.report_interval, config.eval_interval, config.save_interval)
    to_boundary = min(interval - step % interval for interval in intervals)
    return max(1, min(config.steps_per_loop, to_boundary, config.max_iters - step))


def _save(manager, checkpoint, model, step: int, logdir: str, is_chief: bool) -> None:
    saved = manager.save(checkpoint_number=step)
    _sync_to_disk(saved, os.path.join(manager.directory, "checkpoint"))
    if is_chief:
        # The weights alone, for the export steps (the original's --ckpt_path).
        weights = tf.train.Checkpoint(model=model).write(os.path.join(logdir, WEIGHTS_NAME))
        _sync_to_disk(weights)


def _sync_to_disk(prefix: str, *others: str) -> None:
    """Flushes a local checkpoint's files (and `others`, e.g. the `checkpoint` marker that
    names the latest) and their folder to disk, so a power cut cannot leave a marker
    naming bytes that never reached it. Object stores publish whole objects already.
    """
    if "://" in prefix:
        return
    folder = os.path.dirname(prefix)
    for path in [*glob.glob(glob.escape(prefix) + ".*"), *others]:
        if os.path.isfile(path):
            storage.fsync_file(path)
    storage.fsync_dir(folder)


def _write_manifest(
    config: TrainConfig, num_classes: int, step: int, metrics: dict, history: list[dict]
) -> None:
    manifest = {
        "step": "train",
        "delf_version": __version__,
        "params": dataclasses.asdict(config),
        "num_classes": num_classes,
        "global_step": step,
        "metrics": metrics,
        "history": history,
    }
    # Written last and whole (synced, then renamed): it says the run is done.
    fs, logdir = storage.resolve(config.logdir)
    storage.write_json(fs, storage.join(logdir, MANIFEST_NAME), manifest)
