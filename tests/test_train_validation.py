"""Validation during `train` reads the validation split once at most, and says so."""

from __future__ import annotations

import json
import logging

import pytest
import tensorflow as tf

from delf_core.training.config import TrainConfig
from delf_core.training.loop import train
from delf_core.training.validation import Validation, split_size
from tests.test_train_bad_input import split

VALIDATION_LOGGER = "delf_core.training.validation"


def config(train_pattern: str, validation_pattern: str, logdir, **overrides) -> TrainConfig:
    values = dict(
        logdir=str(logdir),
        train_file_pattern=train_pattern,
        validation_file_pattern=validation_pattern,
        num_classes=10,
        image_size=32,
        batch_size=2,
        max_iters=2,
        report_interval=2,
        eval_interval=2,
        save_interval=2,
        use_autoencoder=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def validation_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == VALIDATION_LOGGER]


# On the original's bound (int(50000 / batch_size) = 25,000 batches) this runs for many
# minutes: the timeout makes that a failure, not a stall of the suite.
@pytest.mark.integration
@pytest.mark.timeout(900)
def test_a_smoke_run_validates_exactly_the_split_from_the_manifest(mini_records, tmp_path, caplog):
    manifest = json.loads((mini_records / "build_image_dataset_manifest.json").read_text())
    size = manifest["splits"]["validation"]["records"]
    validation = f"{mini_records}/validation*"
    caplog.set_level(logging.INFO, logger=VALIDATION_LOGGER)

    result = train(
        config(
            f"{mini_records}/train*",
            validation,
            tmp_path / "logs",
            dataset_version="manifest",
            num_classes=None,
            delg_global_features=True,
        )
    )

    assert result.step == 2
    assert result.metrics["validation/images"] == size
    lines = validation_lines(caplog)
    assert lines[0] == f"train: step 2: validating on {size} images of {validation}"
    # Progress every report_interval (2) batches of 2 images, then the end.
    assert f"train: step 2: validation 4/{size} images" in lines
    assert lines[-1].startswith(f"train: step 2: validation {size}/{size} images in ")


class ChoosesClassZero:
    """A stand-in for the model: every image gets class 0."""

    def validation_logits(self, images):
        logits = tf.one_hot(tf.zeros([tf.shape(images)[0]], tf.int32), 3)
        return {"desc_logits": logits, "attn_logits": logits}


def test_without_a_manifest_each_run_is_one_pass_and_the_limits_hold(tmp_path, caplog):
    train_pattern = split(tmp_path / "data", "train")
    # Labels 0, 1, 2 (see `split`): one in three is class 0.
    pattern = split(tmp_path / "data", "validation", shards=3, per_shard=1)
    files = sorted(str(p) for p in (tmp_path / "data").glob("validation-*"))
    caplog.set_level(logging.INFO, logger=VALIDATION_LOGGER)

    def validation(**overrides) -> Validation:
        return Validation(
            ChoosesClassZero(), config(train_pattern, pattern, tmp_path / "l", **overrides), files
        )

    whole = validation()
    assert whole.total is None
    first, second = whole.run(1), whole.run(2)
    assert first["validation/images"] == second["validation/images"] == 3
    assert first["validation/desc"] == pytest.approx(1 / 3)
    lines = validation_lines(caplog)
    assert lines[0] == f"train: step 1: validating on ? images of {pattern}"
    assert lines[-1].startswith("train: step 2: validation 3/? images in ")
    # --num_eval_batches, and the image cap, bound a pass below the split's size.
    assert validation(num_eval_batches=1).run(1)["validation/images"] == 2
    assert validation(max_eval_images=1).run(1)["validation/images"] == 1


def test_split_size_sums_the_manifest_counts_of_the_matched_shards(tmp_path):
    names = [f"validation-0000{i}-of-00003" for i in range(3)]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    manifest = {
        "splits": {
            "train": {"shards": {"train-00000-of-00001": 50}},
            "validation": {"shards": dict(zip(names, (4, 5, 6), strict=True))},
        }
    }
    (tmp_path / "build_image_dataset_manifest.json").write_text(json.dumps(manifest))
    files = [str(tmp_path / name) for name in names]

    assert split_size(files) == 15
    assert split_size(files[1:]) == 11
    # A file the manifest does not list: the size is unknown, not a guess.
    assert split_size([*files, str(tmp_path / "validation-extra")]) is None
    (tmp_path / "build_image_dataset_manifest.json").write_text("{not json")
    assert split_size(files) is None
