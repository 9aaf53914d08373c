"""Servers that misbehave: trickling bytes, damaged md5 files and CSVs; secrets in the URL.

All against a real mirror on 127.0.0.1. Limits in these tests are small and the
trickle far below them, so the outcome does not depend on the machine's speed.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

import pytest

from delf_cli.main import main
from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests

TAR = "train/images_000.tar"
MD5 = "md5sum/train/md5.images_000.txt"
TRICKLE_PAUSE = 0.05


class HostileHandler(FaultyHandler):
    """FaultyHandler, plus "trickle:N" (N bytes at once, then one byte per TRICKLE_PAUSE)
    and "digest:HEX" (an md5 file naming another, well-formed digest)."""

    stop = threading.Event()

    def send_file_range(self, handle, start: int, length: int) -> None:
        fault = self._fault
        if fault.startswith("trickle:"):
            handle.seek(start)
            data = handle.read(length)
            fast = int(fault.split(":")[1])
            try:
                self.wfile.write(data[:fast])
                self.wfile.flush()
                for offset in range(fast, len(data)):
                    if HostileHandler.stop.wait(TRICKLE_PAUSE):
                        break
                    self.wfile.write(data[offset : offset + 1])
                    self.wfile.flush()
            except OSError:
                pass  # the client hung up: what these tests want
            self.close_connection = True
        elif fault.startswith("digest:"):
            name = self.path.rsplit("/", 1)[-1].removeprefix("md5.").replace(".txt", ".tar")
            self.wfile.write(layout.md5_line(fault.split(":")[1], name).encode()[:length])
        else:
            super().send_file_range(handle, start, length)


@pytest.fixture()
def mirror(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 1}, images_per_tar=4, image_bytes=100_000)
    HostileHandler.stop.clear()
    FaultyHandler.reset()
    with MirrorServer(root, handler=HostileHandler) as server:
        yield root, server.url
        HostileHandler.stop.set()


def policy(**overrides) -> RetryPolicy:
    values = dict(retries=1, backoff_seconds=0.01, max_backoff_seconds=0.02, timeout_seconds=10)
    return RetryPolicy(**{**values, **overrides})


# A trickle of about 20 bytes a second is 25 times too slow.
SLOW = dict(min_bytes_per_second=500, rate_window_seconds=0.5)


def download_within(config: DownloadConfig, seconds: float = 120):
    """The report, or a failure if a worker is still held after `seconds`."""
    result = {}
    thread = threading.Thread(target=lambda: result.update(report=download(config)), daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), "the download is still held by the server"
    return result["report"]


def config_for(url: str, out, retry: RetryPolicy) -> DownloadConfig:
    return DownloadConfig(1, 0, 0, output_dir=str(out), base_url=url, max_workers=4, retry=retry)


def gets(path: str) -> list[str | None]:
    return [rng for p, rng in FaultyHandler.requests if p == path]


def test_a_trickle_is_cut_short_and_the_download_resumes_after_the_bytes_it_got(mirror, tmp_path):
    root, url = mirror
    FaultyHandler.reset({TAR: ["trickle:150000"]})

    report = download_within(config_for(url, tmp_path / "out", policy(retries=2, **SLOW)))

    assert not report.failed, report.failed
    (first, resumed) = [rng for path, rng in tar_requests()]
    assert first is None
    assert int(resumed.removeprefix("bytes=").rstrip("-")) >= 150_000
    assert (tmp_path / "out" / TAR).read_bytes() == (root / TAR).read_bytes()
    assert len(list((tmp_path / "out" / "train").glob("*/*/*/*.jpg"))) == 4


@pytest.mark.parametrize(
    "limit, flag",
    [
        (SLOW, "--min_bytes_per_second"),
        (dict(min_bytes_per_second=0, file_deadline_seconds=1.0), "--file_deadline_seconds"),
    ],
)
def test_a_server_that_trickles_for_ever_fails_the_file_with_one_line(
    mirror, tmp_path, limit, flag
):
    _, url = mirror
    FaultyHandler.reset({TAR: ["trickle:0", "trickle:0"]})

    report = download_within(config_for(url, tmp_path / "out", policy(**limit)))

    (failed,) = report.failed
    assert failed.name == "images_000.tar"
    assert flag in failed.error and "\n" not in failed.error
    assert len(tar_requests()) == 2  # retried once, as the policy says


def test_a_damaged_md5_file_is_fetched_again_in_the_same_run(mirror, tmp_path):
    _, url = mirror
    FaultyHandler.reset({MD5: ["corrupt"]})

    report = download(config_for(url, tmp_path / "out", policy()))

    assert not report.failed, report.failed
    assert len(gets(MD5)) == 2


def test_an_md5_file_naming_another_digest_is_fetched_again_not_the_tar(mirror, tmp_path):
    _, url = mirror
    FaultyHandler.reset({MD5: ["digest:" + "0" * 32]})

    report = download(config_for(url, tmp_path / "out", policy()))

    assert not report.failed, report.failed
    assert len(gets(MD5)) == 2
    assert len(tar_requests()) == 1  # the tar was right all along


def write_train_csv(root, rows: list[str]) -> bytes:
    data = ("id,url,landmark_id\n" + "".join(f"{row}\n" for row in rows)).encode()
    (root / "metadata" / "train.csv").write_bytes(data)
    return data


GOOD_ROWS = [f"{k:016x},http://example.com/{k}.jpg,{k % 7}" for k in range(200)]


def test_a_csv_damaged_on_its_way_is_fetched_again(mirror, tmp_path):
    root, url = mirror
    data = write_train_csv(root, GOOD_ROWS)
    FaultyHandler.reset({"metadata/train.csv": ["corrupt"]})

    report = download(config_for(url, tmp_path / "out", policy()))

    assert not report.failed, report.failed
    assert (tmp_path / "out" / "train" / "train.csv").read_bytes() == data
    assert len(gets("metadata/train.csv")) == 2


def test_a_csv_with_a_wrong_row_fails_naming_the_file_and_line(mirror, tmp_path):
    root, url = mirror
    write_train_csv(root, GOOD_ROWS[:5] + ["0000000000000009,http://x,3,extra"] + GOOD_ROWS[5:])

    report = download(config_for(url, tmp_path / "out", policy()))

    (failed,) = report.failed
    assert failed.name == "train.csv"
    assert "train.csv" in failed.error and "line 7" in failed.error and "\n" not in failed.error
    assert not (tmp_path / "out" / "train" / "train.csv").exists()
    assert len(gets("metadata/train.csv")) == 2


def test_a_damaged_csv_left_by_an_earlier_run_is_replaced(mirror, tmp_path):
    root, url = mirror
    data = write_train_csv(root, GOOD_ROWS)
    out = tmp_path / "out"
    (out / "train").mkdir(parents=True)
    damaged = data[:100] + b"\xff" + data[101:]
    (out / "train" / "train.csv").write_bytes(damaged)

    report = download(config_for(url, out, policy()))

    assert not report.failed, report.failed
    assert (out / "train" / "train.csv").read_bytes() == data
    assert (out / "train" / "train.csv.damaged").read_bytes() == damaged  # kept, not lost


SECRET = "s3cr3t-Pa55"


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("server", ["answering", "refusing", "trickling"])
def test_credentials_in_the_base_url_appear_nowhere(mirror, tmp_path, capsys, caplog, server):
    _, url = mirror
    port = closed_port() if server == "refusing" else url.rsplit(":", 1)[1]
    secret_url = f"http://reader:{SECRET}@127.0.0.1:{port}"
    FaultyHandler.reset({"metadata/train.csv": ["500"]})
    out = tmp_path / "out"
    caplog.set_level(logging.DEBUG)
    argv = ["download", "2", "0", "0", f"--base_url={secret_url}", f"--output_dir={out}"]
    argv += ["--retries=1", "--backoff_seconds=0.01", "--max_workers=4"]
    if server == "trickling":
        FaultyHandler.reset({TAR: ["trickle:0"]})
        argv += ["--rate_window_seconds=0.5", "--min_bytes_per_second=500"]

    began = time.monotonic()
    code = main(argv)

    assert time.monotonic() - began < 120
    assert code == 1  # images_001.tar is not in the bucket
    captured = capsys.readouterr()
    shown = captured.out + captured.err + caplog.text
    assert "reader:***@127.0.0.1" in shown
    assert SECRET not in shown
    for path in out.rglob("*"):
        if path.is_file() and path.stat().st_size < 1_000_000:
            assert SECRET.encode() not in path.read_bytes(), path
