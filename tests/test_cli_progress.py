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


def test_a_resumed_run_s_bar_starts_at_its_step_and_leaves_the_warmup_out_of_its_speed():
    now = [0.0]
    bar = StepProgress("train", "steps", bar=True, clock=lambda: now[0])
    try:
        bar(40, 100)  # restored from a checkpoint: not 40 steps of speed
        assert (bar.completed, bar.speed) == (40, "")
        now[0] += 120  # the first call traces the graph
        bar(45, 100)
        assert (bar.completed, bar.speed) == (45, "")
        now[0] += 5
        bar(50, 100)
        assert (bar.completed, bar.total) == (50, 100)
        assert bar.speed == "1.00 steps/s, 50 s left"
    finally:
        bar.close()


def test_without_a_terminal_progress_goes_to_log_lines(mini_gldv2, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="delf_core.progress"):
        assert main(["build_image_dataset", *flags(mini_gldv2, tmp_path / "records")]) == 0
    lines = [r.getMessage() for r in caplog.records if r.name == "delf_core.progress"]
    assert lines[0].startswith("build_image_dataset: 0/")
    total = lines[0].split("/")[1].split(" ")[0]
    assert lines[-1].startswith(f"build_image_dataset: {total}/{total} images (100.0%)")
