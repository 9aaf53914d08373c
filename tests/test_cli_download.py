"""`delf download`, `delf serve_mirror` and the flag syntax, as a user runs them."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from delf_cli.main import main, parse_args
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests, write_md5
from tests.flag_help import assert_help_shows_defaults


def test_delf_help_lists_the_subcommands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    for name in ("download", "make_mini_dataset", "serve_mirror"):
        assert name in out


def test_download_help_documents_every_flag_with_its_default(capsys):
    assert_help_shows_defaults(
        capsys,
        "download",
        [
            ("--output_dir", "'gldv2_dataset'"),
            ("--base_url", "'https://s3.amazonaws.com/google-landmark'"),
            ("--max_workers", "8"),
            ("--delete_tars", "False"),
            ("--retries", "5"),
            ("--min_bytes_per_second", "1024.0"),
            ("--rate_window_seconds", "60.0"),
            ("--file_deadline_seconds", "86400.0"),
            ("--max_unpacked_bytes", str(16 * 2**30)),
            ("--max_tar_members", "100000"),
        ],
    )


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--output_dir=a", "--max_workers=3"], {"output_dir": "a", "max_workers": 3}),
        (["--output_dir", "a", "--max_workers", "3"], {"output_dir": "a", "max_workers": 3}),
        (["--delete_tars"], {"delete_tars": True}),
        (["--delete_tars", "--nodelete_tars"], {"delete_tars": False}),
        (["--delete_tars=true"], {"delete_tars": True}),
        (["--delete_tars=false"], {"delete_tars": False}),
        ([], {"delete_tars": False, "retries": 5, "output_dir": "gldv2_dataset"}),
    ],
)
def test_flags_accept_both_absl_forms(argv, expected):
    _, args = parse_args(["download", "5", "2", "1", *argv])
    assert (args.num_train, args.num_index, args.num_test) == (5, 2, 1)
    for name, value in expected.items():
        assert getattr(args, name) == value


def test_boolean_flag_does_not_swallow_the_positional_numbers():
    _, args = parse_args(["download", "--delete_tars", "5", "2", "1"])
    assert args.delete_tars is True
    assert (args.num_train, args.num_index, args.num_test) == (5, 2, 1)


@pytest.mark.parametrize(
    "argv, message",
    [
        (["download", "501", "0", "0"], "NUM_TRAIN=501"),
        (["download", "x", "0", "0"], "NUM_TRAIN"),
        (["download", "1", "0"], "NUM_TEST"),
        (["download", "0", "0", "0", "--max_workers=0"], "max_workers"),
        (["download", "0", "0", "0", "--delete_tars=maybe"], "delete_tars"),
        (["download", "0", "0", "0", "--max_tar_members=0"], "max_tar_members"),
        (["download", "0", "0", "0", "--max_unpacked_bytes=-5"], "max_unpacked_bytes"),
        (["download", "0", "0", "0", "--min_bytes_per_second=-1"], "min_bytes_per_second"),
        (["download", "0", "0", "0", "--rate_window_seconds=0"], "rate_window_seconds"),
        (["download", "0", "0", "0", "--file_deadline_seconds=soon"], "file_deadline_seconds"),
    ],
)
def test_bad_arguments_exit_2_naming_the_argument(argv, message, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        code = main([*argv, f"--output_dir={tmp_path}/out"])
        raise SystemExit(code)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_download_of_the_mini_dataset_through_the_mirror(mini_bucket, tmp_path, capsys):
    out = tmp_path / "gldv2_dataset"
    with MirrorServer(mini_bucket) as server:
        code = main(["download", "2", "1", "1", f"--base_url={server.url}", f"--output_dir={out}"])
    assert code == 0
    stdout = capsys.readouterr().out
    # 10 CSVs and 4 tars.
    assert "14 downloaded, 0 already done, 0 failed" in stdout
    train_ids = [
        line.split(",")[0] for line in (out / "train" / "train.csv").read_text().splitlines()[1:]
    ]
    assert train_ids and all((out / "train" / layout.image_relpath(i)).exists() for i in train_ids)
    for name in ("retrieval_solution_v2.1.csv", "recognition_solution_v2.1.csv", "test.csv"):
        assert (out / "test" / name).exists()


def test_failed_tar_makes_a_non_zero_exit_naming_it(tmp_path, capsys):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 2})
    write_md5(root, "train", 1, "0" * 32)
    with MirrorServer(root) as server:
        code = main(
            [
                "download",
                "2",
                "0",
                "0",
                f"--base_url={server.url}",
                f"--output_dir={tmp_path}/out",
                "--retries=1",
                "--backoff_seconds=0.01",
            ]
        )
    assert code == 1
    err = capsys.readouterr().err
    assert "failed: train/images_001.tar" in err and "md5" in err


@pytest.mark.integration
def test_killed_mid_file_then_rerun_resumes_and_finishes(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 1}, images_per_tar=4, image_bytes=1_000_000)
    out = tmp_path / "out"
    part = out / "train" / "images_000.tar.part"
    # 600 kB of the tar, then nothing (every attempt), until the download is killed.
    FaultyHandler.reset({"train/images_000.tar": ["pause:600000"] * 20})
    with MirrorServer(root, handler=FaultyHandler) as server:
        argv = [
            sys.executable,
            "-m",
            "delf_cli.main",
            "download",
            "1",
            "0",
            "0",
            f"--base_url={server.url}",
            f"--output_dir={out}",
        ]
        process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while not (part.exists() and part.stat().st_size >= 500_000):
            assert time.monotonic() < deadline, "no partial file appeared"
            assert process.poll() is None, "the download ended before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
        assert not (out / "train" / "images_000.tar").exists()
        assert not list((out / "train").glob("*/*/*/*.jpg"))
        kept = part.stat().st_size

        FaultyHandler.reset()
        code = main(["download", "1", "0", "0", f"--base_url={server.url}", f"--output_dir={out}"])

    assert code == 0
    assert tar_requests()[-1] == ("train/images_000.tar", f"bytes={kept}-")
    tar = (out / "train" / "images_000.tar").read_bytes()
    assert tar == (root / "train" / "images_000.tar").read_bytes()
    assert len(list((out / "train").glob("*/*/*/*.jpg"))) == 4


@pytest.mark.integration
def test_serve_mirror_command_serves_ranges_and_refuses_escapes(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"test": 1})
    process = subprocess.Popen(
        [sys.executable, "-m", "delf_cli.main", "serve_mirror", f"--root={root}", "--port=0"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        url = line.strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        tar = (root / "test" / "images_000.tar").read_bytes()
        request = urllib.request.Request(
            f"{url}/test/images_000.tar", headers={"Range": "bytes=10-19"}
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 206
            assert response.read() == tar[10:20]
        with urllib.request.urlopen(f"{url}/md5sum/test/md5.images_000.txt") as response:
            assert response.read().split()[0].decode() == hashlib.md5(tar).hexdigest()
        with pytest.raises(urllib.error.HTTPError) as error:
            urllib.request.urlopen(f"{url}/../../etc/passwd")
        assert error.value.code == 404
    finally:
        process.terminate()
        process.wait(timeout=120)


def test_serve_mirror_refuses_a_missing_root(tmp_path, capsys):
    assert main(["serve_mirror", f"--root={tmp_path}/nope"]) == 2
    assert "--root" in capsys.readouterr().err


@pytest.mark.integration
def test_terminal_gets_a_progress_bar(mini_bucket, tmp_path):
    import pty

    leader, follower = pty.openpty()
    with MirrorServer(mini_bucket) as server:
        process = subprocess.run(
            [
                sys.executable,
                "-m",
                "delf_cli.main",
                "download",
                "2",
                "1",
                "1",
                f"--base_url={server.url}",
                f"--output_dir={tmp_path}/out",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=follower,
            env={**os.environ, "COLUMNS": "120"},
            timeout=900,
        )
    os.close(follower)
    screen = b""
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    text = screen.decode(errors="replace")
    assert process.returncode == 0
    assert "14/14 files" in text
    assert "MB" in text  # bytes downloaded; the rate needs more than a moment to show
    assert "INFO" not in text  # the bar replaces the per-file log lines
