"""`delf build_image_dataset` as users run it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from delf_cli.main import main, parse_args
from tests.flag_help import assert_help_shows_defaults

pytestmark = pytest.mark.integration

# The seed README's command, flag for flag.
SEED_COMMAND = [
    "--train_csv_path=gldv2_dataset/train/train.csv",
    "--train_clean_csv_path=gldv2_dataset/train/train_clean.csv",
    "--train_directory=gldv2_dataset/train/*/*/*/",
    "--output_directory=gldv2_dataset/tfrecord/",
    "--num_shards=128",
    "--generate_train_validation_splits",
    "--validation_split_size=0.2",
]
SEED_TEST_FLAGS = [
    "--test_csv_path=gldv2_dataset/train/test.csv",
    "--test_directory=gldv2_dataset/test/*/*/*/",
]


@pytest.fixture()
def workdir(mini_gldv2, tmp_path, monkeypatch):
    shutil.copytree(mini_gldv2, tmp_path / "gldv2_dataset")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def manifest(workdir) -> dict:
    path = workdir / "gldv2_dataset" / "tfrecord" / "build_image_dataset_manifest.json"
    return json.loads(path.read_text())


def test_seed_commands_run_unchanged(workdir, capsys):
    assert main(["build_image_dataset", *SEED_COMMAND]) == 0
    first = manifest(workdir)
    assert set(first["splits"]) == {"train", "validation"}
    assert len(first["splits"]["train"]["shards"]) == 128
    assert "train" in capsys.readouterr().out

    assert main(["build_image_dataset", *SEED_COMMAND, *SEED_TEST_FLAGS]) == 0
    second = manifest(workdir)
    assert second["splits"]["test"]["records"] == 16
    shards = list((workdir / "gldv2_dataset" / "tfrecord").glob("*-of-00128"))
    assert len(shards) == 3 * 128


def test_unknown_flags_become_beam_options():
    _, args = parse_args(
        [
            "build_image_dataset",
            *SEED_COMMAND,
            "--runner=DataflowRunner",
            "--project=p",
            "--direct_num_workers",
            "2",
        ]
    )
    assert args.num_shards == 128 and args.generate_train_validation_splits is True
    assert args.pipeline_args == [
        "--runner=DataflowRunner",
        "--project=p",
        "--direct_num_workers",
        "2",
    ]


def test_help_documents_every_flag_with_its_default(capsys):
    assert_help_shows_defaults(
        capsys,
        "build_image_dataset",
        [
            ("--train_directory", "'/tmp/'"),
            ("--test_directory", "None"),
            ("--output_directory", "'/tmp/'"),
            ("--train_csv_path", "'/tmp/train.csv'"),
            ("--train_clean_csv_path", "None"),
            ("--test_csv_path", "None"),
            ("--num_shards", "128"),
            ("--generate_train_validation_splits", "False"),
            ("--validation_split_size", "0.2"),
            ("--seed", "0"),
            ("--strict", "False"),
            ("--max_image_pixels", "89478485"),
            ("--allow_empty", "False"),
        ],
    )


def test_bad_split_size_is_a_clear_error(workdir, capsys):
    code = main(["build_image_dataset", *SEED_COMMAND, "--validation_split_size=1.5"])
    assert code == 2
    assert "--validation_split_size=1.5" in capsys.readouterr().err
    assert not (workdir / "gldv2_dataset" / "tfrecord").exists()


def test_missing_csv_is_a_clear_error(workdir, capsys):
    (workdir / "gldv2_dataset" / "train" / "train_clean.csv").unlink()
    assert main(["build_image_dataset", *SEED_COMMAND]) != 0
    assert "train_clean.csv" in capsys.readouterr().err


def test_the_delf_command_runs_the_job_in_its_own_process(workdir):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "delf_cli.main",
            "build_image_dataset",
            *SEED_COMMAND[:4],
            "--num_shards=2",
            "--runner=DirectRunner",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert manifest(workdir)["splits"]["train"]["records"] == 60
