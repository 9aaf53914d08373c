"""Validation during training: at most one pass over the validation split, with progress."""

from __future__ import annotations

import json
import logging
import posixpath
import time

import tensorflow as tf

from delf_core.build_image_dataset.report import MANIFEST_NAME
from delf_core.input_pipeline import create_dataset
from delf_core.training.config import TrainConfig
from delf_core.training.data_checks import read_error
from delf_core.training.losses import correct_predictions

log = logging.getLogger(__name__)
FLAG = "validation_file_pattern"


def split_size(files: list[str]) -> int | None:
    """Records in `files`, from the build manifest beside them; None if it does not say.

    The manifest counts the records of every shard it wrote; a file it does not list
    (another build, a file copied in) leaves the size unknown.
    """
    if not files:
        return 0
    path = posixpath.join(posixpath.dirname(files[0]), MANIFEST_NAME)
    try:
        with tf.io.gfile.GFile(path) as handle:
            manifest = json.load(handle)
        counts = {
            name: int(count)
            for split in manifest["splits"].values()
            for name, count in split["shards"].items()
        }
    except (tf.errors.OpError, ValueError, KeyError, TypeError, AttributeError):
        return None
    names = [posixpath.basename(f) for f in files]
    if any(name not in counts for name in names):
        return None
    return sum(counts[name] for name in names)


class Validation:
    """Accuracy of the descriptor and attention classifiers on the validation split.

    Each run reads the split once at most: `config.eval_image_limit()` images, or the
    whole split when it is smaller (the original read int(50000 / batch_size) batches
    of the repeated split, which on a split of 7 images meant 25,000 batches). It logs
    when it starts, every `report_interval` batches and when it ends.
    """

    def __init__(self, model, config: TrainConfig, files: list[str]) -> None:
        self._config = config
        limit = config.eval_image_limit()
        size = split_size(files)
        # The number of images a run will read, when the manifest says how many there are.
        self.total = None if size is None else min(limit, size)
        self._dataset = create_dataset(
            config.validation_file_pattern,
            config.image_size,
            config.batch_size,
            augmentation=False,
            seed=config.seed,
            repeat=False,
            deterministic=config.deterministic,
            max_examples=limit,
        )

        @tf.function(reduce_retracing=True)
        def count_correct(images: tf.Tensor, labels: tf.Tensor) -> dict[str, tf.Tensor]:
            logits = model.validation_logits(images)
            return {
                "desc": correct_predictions(labels, logits["desc_logits"]),
                "attn": correct_predictions(labels, logits["attn_logits"]),
            }

        self._count_correct = count_correct

    def run(self, step: int) -> dict[str, float]:
        """One pass; returns `validation/desc`, `validation/attn` and `validation/images`.

        Raises:
          RecordsError: a validation record is damaged (naming the file when it can).
        """
        config = self._config
        total = "?" if self.total is None else str(self.total)
        log.info(
            "train: step %d: validating on %s images of %s",
            step,
            total,
            config.validation_file_pattern,
        )
        began = time.monotonic()
        correct = {"desc": 0.0, "attn": 0.0}
        seen = batches = 0
        try:
            for images, labels in self._dataset:
                counts = self._count_correct(images, labels)
                for name in correct:
                    correct[name] += float(counts[name])
                seen += int(labels.shape[0])
                batches += 1
                if batches % config.report_interval == 0:
                    log.info("train: step %d: validation %d/%s images", step, seen, total)
        except (tf.errors.DataLossError, tf.errors.InvalidArgumentError) as error:
            problem = read_error(FLAG, config.validation_file_pattern, error)
            if problem is None:
                raise
            raise problem from None
        results = {f"validation/{name}": value / max(seen, 1) for name, value in correct.items()}
        log.info(
            "train: step %d: validation %d/%s images in %.1f s: desc acc %.3f attn acc %.3f",
            step,
            seen,
            total,
            time.monotonic() - began,
            results["validation/desc"],
            results["validation/attn"],
        )
        results["validation/images"] = float(seen)
        return results
