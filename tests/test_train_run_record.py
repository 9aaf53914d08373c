"""The record of a training run: `delf train` resumes, or sets aside a logdir of other data."""

from __future__ import annotations

import json

import pytest

from delf_cli.main import main
from delf_core.build_image_dataset import MANIFEST_NAME as BUILD_MANIFEST_NAME
from delf_core.training.config import TrainConfig
from delf_core.training.run_record import (
    RUN_NAME,
    data_id,
    read_run,
    start_run,
    train_is_current,
)
from tests.test_train_bad_input import argv, split


def _build(folder, built_at: str) -> None:
    """A build manifest beside the shards, as build_image_dataset writes it last."""
    manifest = {"fingerprint": "inputs", "built_at": built_at}
    (folder / BUILD_MANIFEST_NAME).write_text(json.dumps(manifest))


def test_a_run_on_the_same_data_resumes_and_one_on_other_data_starts_over(tmp_path):
    logdir = str(tmp_path / "logs")
    first = start_run(logdir, "a@1")
    (tmp_path / "logs" / "ckpt").write_text("step 2")
    assert start_run(logdir, "a@1") == first == read_run(logdir)
    assert (tmp_path / "logs" / "ckpt").exists()

    second = start_run(logdir, "a@2")
    assert second["data"] == "a@2" and second["run"] != first["run"]
    assert sorted(p.name for p in (tmp_path / "logs").iterdir()) == [RUN_NAME]
    assert (tmp_path / "logs.previous" / "ckpt").read_text() == "step 2"
    assert read_run(str(tmp_path / "logs.previous")) == first


def test_a_logdir_without_a_record_is_resumed(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "ckpt").write_text("step 2")
    start_run(str(tmp_path / "logs"), None)
    assert (tmp_path / "logs" / "ckpt").exists()
    assert not (tmp_path / "logs.previous").exists()


def test_data_id_names_the_build_and_a_half_written_manifest_names_none(tmp_path):
    config = TrainConfig(train_file_pattern=f"{tmp_path}/train-*")
    assert data_id(config) is None
    _build(tmp_path, "monday")
    assert data_id(config) == "inputs@monday"
    (tmp_path / BUILD_MANIFEST_NAME).write_text('{"fingerprint": "inp')
    assert data_id(config) is None


@pytest.mark.integration
def test_delf_train_resumes_its_run_and_starts_over_on_a_new_build(tmp_path, capsys):
    data = tmp_path / "data"
    patterns = {name: split(data, name) for name in ("train", "validation")}
    _build(data, "monday")
    logdir = tmp_path / "logs"
    command = argv(**patterns, logdir=logdir)
    assert main(command) == 0
    assert "step 2, resumed from 0" in capsys.readouterr().out
    run = read_run(str(logdir))
    assert run["data"] == "inputs@monday"

    assert main(command) == 0
    assert "already at step 2; nothing to do" in capsys.readouterr().out
    assert read_run(str(logdir)) == run

    # The TFRecords are built again: a new model is trained, the old one is kept aside.
    _build(data, "tuesday")
    assert main(command) == 0
    assert "step 2, resumed from 0" in capsys.readouterr().out
    assert read_run(str(logdir))["data"] == "inputs@tuesday"
    assert read_run(f"{logdir}.previous") == run
    assert (tmp_path / "logs.previous" / "delf_weights.index").exists()
    config = TrainConfig(
        logdir=str(logdir),
        train_file_pattern=patterns["train"],
        validation_file_pattern=patterns["validation"],
        num_classes=3,
        image_size=32,
        batch_size=2,
        max_iters=2,
        use_autoencoder=False,
    )
    assert train_is_current(config)
