"""`delf build_image_dataset` progress: a bar of planned images on a terminal, else log lines."""

from __future__ import annotations

import logging

import pytest

from beam_jobs.build_image_dataset import run_build
from delf_cli.main import main
from delf_cli.progress import StepProgress
from delf_core.build_image_dataset import BuildConfig, plan_build

pytestmark = pytest.mark.integration


def flags(mini_gldv2, out) -> list[str]:
    return [
        f"--train_clean_csv_path={mini_gldv2}/train/train_clean.csv",
        f"--train_directory={mini_gldv2}/train/*/*/*/",
        f"--output_directory={out}",
        "--num_shards=2",
        "--generate_train_validation_splits",
    ]


def test_the_bar_total_is_the_planned_images(mini_gldv2, tmp_path):
    config = BuildConfig(
        train_clean_csv_path=f"{mini_gldv2}/train/train_clean.csv",
        train_directory=f"{mini_gldv2}/train/*/*/*/",
        output_directory=str(tmp_path / "records"),
        num_shards=2,
        generate_train_validation_splits=True,
    )
    planned = sum(plan_build(config).counts().values())
    bar = StepProgress("build_image_dataset", "images", bar=True)
    try:
        run_build(config, on_progress=bar)
    finally:
        bar.close()
    assert bar.total == planned
    assert bar.completed == planned


def test_without_a_terminal_progress_goes_to_log_lines(mini_gldv2, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="delf_core.progress"):
        assert main(["build_image_dataset", *flags(mini_gldv2, tmp_path / "records")]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "delf_core.progress"]
    assert lines[0].startswith("build_image_dataset: 0/")
    total = lines[0].split("/")[1].split(" ")[0]
    assert lines[-1].startswith(f"build_image_dataset: {total}/{total} images (100.0%)")
