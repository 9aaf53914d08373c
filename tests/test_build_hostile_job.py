"""The build_image_dataset job and command on hostile input, end to end on the mini dataset."""

from __future__ import annotations

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from beam_jobs.build_image_dataset import run_build
from delf_cli.main import main
from delf_core.build_image_dataset import MANIFEST_NAME, REPORT_NAME
from delf_core.gldv2 import layout
from tests.killed_process import kill_when_marked
from tests.test_build_hostile import jpeg_claiming
from tests.test_build_image_dataset import clean_csv, config_for, read_split

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[1]
# TensorFlow's C++ start-up lines (absl/glog format), which no Python setting silences.
_NATIVE_LOG = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl)")
# Log records of the job's progress (`%(asctime)s LEVEL message`), not errors.
_INFO_LOG = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ INFO ")


@pytest.fixture()
def dataset(mini_gldv2, tmp_path):
    copy = tmp_path / "gldv2_dataset"
    shutil.copytree(mini_gldv2, copy)
    return copy


def image_path(dataset, image_id):
    return dataset / "train" / layout.image_relpath(image_id)


def cli_flags(dataset, out, num_shards=2) -> list[str]:
    return [
        f"--train_csv_path={dataset}/train/train.csv",
        f"--train_clean_csv_path={dataset}/train/train_clean.csv",
        f"--train_directory={dataset}/train/*/*/*/",
        f"--output_directory={out}",
        f"--num_shards={num_shards}",
        "--generate_train_validation_splits",
    ]


def error_lines(stderr: str) -> list[str]:
    """What stderr says beyond TensorFlow's native start-up chatter and INFO progress."""
    return [
        line
        for line in stderr.splitlines()
        if line.strip() and not _NATIVE_LOG.match(line) and not _INFO_LOG.match(line)
    ]


def on_disk(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if not p.name.startswith("."))


def shard_names(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:05d}-of-{count:05d}" for i in range(count)]


# --- 1. a decompression bomb among the images ---------------------------------------


def test_bombs_are_left_out_as_too_large_and_the_build_finishes(dataset, tmp_path):
    ids = sorted(clean_csv(dataset))
    image_path(dataset, ids[0]).write_bytes(jpeg_claiming(30000, 30000))
    image_path(dataset, ids[1]).write_bytes(jpeg_claiming(12000, 12000))
    out = tmp_path / "out"

    manifest = run_build(config_for(dataset, out, test_csv_path=None))

    assert manifest["problems"] == {"too_large": 2}
    with open(out / REPORT_NAME, newline="") as handle:
        report = {row["image_id"]: row for row in csv.DictReader(handle)}
    assert {i: r["problem"] for i, r in report.items()} == {
        ids[0]: "too_large",
        ids[1]: "too_large",
    }
    assert "12000x12000" in report[ids[1]]["detail"]
    written = {r["id"] for r in read_split(out, "train") + read_split(out, "validation")}
    assert written == set(ids) - set(ids[:2])
    assert (out / MANIFEST_NAME).exists()


def test_strict_stops_at_a_bomb_with_one_line_from_the_command(dataset, tmp_path, capsys):
    bomb = image_path(dataset, sorted(clean_csv(dataset))[0])
    bomb.write_bytes(jpeg_claiming(30000, 30000))
    out = tmp_path / "out"

    code = main(["build_image_dataset", *cli_flags(dataset, out), "--strict"])

    err = capsys.readouterr().err
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("build_image_dataset: error: ")
    assert f"{bomb}: too_large" in err and "(--strict)" in err
    assert not (out / MANIFEST_NAME).exists() and not list(out.glob("*-of-*"))


def test_a_lower_max_image_pixels_leaves_out_the_larger_images(dataset, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["build_image_dataset", *cli_flags(dataset, out), "--max_image_pixels=1000"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["params"]["max_image_pixels"] == 1000
    assert manifest["problems"] == {"too_large": len(clean_csv(dataset))}
    assert "too_large" in capsys.readouterr().out


# --- 2. an error inside the job reaches the user as one line ------------------------


def test_strict_error_inside_the_job_is_one_line_on_stderr(dataset, tmp_path):
    truncated = image_path(dataset, sorted(clean_csv(dataset))[0])
    truncated.write_bytes(truncated.read_bytes()[:600])  # exists, so planning cannot tell
    out = tmp_path / "out"

    result = subprocess.run(
        [sys.executable, "-m", "delf_cli.main", "build_image_dataset"]
        + [*cli_flags(dataset, out), "--strict"],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=600,
    )

    assert result.returncode == 1
    lines = error_lines(result.stderr)
    assert len(lines) == 1, result.stderr[-3000:]
    assert lines[0].startswith(f"build_image_dataset: error: {truncated}: unreadable")
    assert lines[0].endswith("(--strict)")
    assert not (out / MANIFEST_NAME).exists() and not list(out.glob("*-of-*"))


def test_a_crash_inside_the_job_is_one_line_and_leaves_no_partial_build(
    dataset, tmp_path, monkeypatch, capsys
):
    import beam_jobs.build_image_dataset as job

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(job, "finalize", disk_full)
    out = tmp_path / "out"

    code = main(["build_image_dataset", *cli_flags(dataset, out)])

    # Beam logs the worker's traceback (an unexpected error needs it); the command
    # returns, it does not raise, and its last word is one line naming the cause.
    assert code == 1
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith("build_image_dataset: error: the Beam job failed: ")
    assert "No space left on device" in last
    assert on_disk(out) == []


# --- 4. rebuilds: another shard count, and a build killed midway ---------------------


def test_rebuild_with_another_num_shards_leaves_only_the_new_shards(dataset, tmp_path):
    out = tmp_path / "out"
    run_build(config_for(dataset, out, num_shards=4))
    assert len(list(out.glob("test-*"))) == 4

    manifest = run_build(config_for(dataset, out, num_shards=2, test_csv_path=None))

    new = shard_names("train", 2) + shard_names("validation", 2)
    assert on_disk(out) == sorted([*new, MANIFEST_NAME, REPORT_NAME, "relabeling.csv"])
    listed = [name for split in manifest["splits"].values() for name in split["shards"]]
    assert sorted(listed) == sorted(new)
    total = len(read_split(out, "train")) + len(read_split(out, "validation"))
    assert total == len(clean_csv(dataset))  # `train*` and `validation*` read one build


# Runs the command, but stops for good where the manifest would be written.
_STOPS_BEFORE_THE_MANIFEST = """
import sys, threading
import beam_jobs.build_image_dataset as job
from delf_cli.main import main

def finalize(*args, **kwargs):
    open(sys.argv[1], "w").close()
    threading.Event().wait(900)  # the test kills the process here

job.finalize = finalize
sys.exit(main(["build_image_dataset", *sys.argv[2:]]))
"""


def test_a_rebuild_killed_midway_leaves_no_manifest_and_the_next_run_rebuilds(dataset, tmp_path):
    out = tmp_path / "out"
    run_build(config_for(dataset, out, num_shards=4, test_csv_path=None))
    reached = tmp_path / "reached_finalize"
    kill_when_marked(
        [sys.executable, "-c", _STOPS_BEFORE_THE_MANIFEST, str(reached)]
        + cli_flags(dataset, out, num_shards=2),
        reached,
        "the build's manifest",
        timeout=600,
        cwd=REPO,
    )

    # Every shard of the new build is written, and still none passes for a finished build.
    assert set(shard_names("train", 2)) <= set(on_disk(out))
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob("*-of-00004"))

    manifest = run_build(config_for(dataset, out, num_shards=2, test_csv_path=None))

    assert manifest["params"]["num_shards"] == 2
    shards = sorted(shard_names("train", 2) + shard_names("validation", 2))
    assert [n for n in on_disk(out) if "-of-" in n] == shards
    assert not list(out.glob(".*.tmp"))
    assert not list((out / ".build_image_dataset").iterdir())


# --- 3 and 5. bad tables, empty splits, from the command ----------------------------


def test_a_non_integer_landmark_id_is_one_line_naming_file_row_and_column(
    dataset, tmp_path, capsys
):
    train_csv = dataset / "train" / "train.csv"
    lines = train_csv.read_text().splitlines()
    lines[3] = lines[3].rsplit(",", 1)[0] + ",12.5"
    train_csv.write_text("\n".join(lines) + "\n")
    flags = [f for f in cli_flags(dataset, tmp_path / "out") if "clean" not in f]

    code = main(["build_image_dataset", *flags])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{train_csv}: row 4, column landmark_id: '12.5'" in err
    assert not (tmp_path / "out").exists()


def test_a_clean_csv_with_no_rows_is_an_error_unless_allowed(dataset, tmp_path, capsys):
    clean = dataset / "train" / "train_clean.csv"
    clean.write_text("landmark_id,images\n")
    out = tmp_path / "out"

    code = main(["build_image_dataset", *cli_flags(dataset, out)])

    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert f"{clean}: lists no image" in err and "--allow_empty" in err
    assert not out.exists()

    assert main(["build_image_dataset", *cli_flags(dataset, out), "--allow_empty"]) == 0
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["splits"]["train"]["records"] == 0
