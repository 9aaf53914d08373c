"""The download's progress counts true bytes: the bar's total is the files' real size."""

from __future__ import annotations

import http.server
import logging
import threading

import pytest

from delf_cli.progress import BarProgress, LogProgress
from delf_core.download import download
from delf_core.download.fetch import RetryPolicy
from delf_core.download.sizes import remote_size
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from delf_core.progress import format_bytes
from tests.bucket import FaultyHandler, make_bucket, served_bytes
from tests.test_download import TARS, config_for


@pytest.fixture()
def bucket(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, TARS)
    FaultyHandler.reset()
    with MirrorServer(root, handler=FaultyHandler) as server:
        yield root, server.url


def true_total(root) -> int:
    return served_bytes(root, TARS)


def test_the_bar_total_is_the_true_byte_total_even_for_a_resumed_file(bucket, tmp_path):
    root, url = bucket
    tar = layout.tar_bucket_path("train", 0)
    FaultyHandler.reset({tar: ["drop:3000"]})  # the body is cut: the retry resumes at 3000
    out = tmp_path / "gldv2_dataset"
    bar = BarProgress()
    try:
        report = download(config_for(url, out), bar)
    finally:
        bar.close()

    assert not report.failed
    assert (tar, "bytes=3000-") in FaultyHandler.requests
    assert bar.total == true_total(root)
    assert bar.completed == bar.total
    csvs = sum(len(layout.METADATA_FILES[split]) for split in layout.SPLITS)
    assert len(FaultyHandler.heads) == csvs + sum(TARS.values())


def test_a_rerun_counts_the_files_already_there(bucket, tmp_path):
    root, url = bucket
    out = tmp_path / "gldv2_dataset"
    download(config_for(url, out))
    FaultyHandler.reset()
    bar = BarProgress()
    try:
        download(config_for(url, out), bar)
    finally:
        bar.close()
    assert bar.total == bar.completed == true_total(root)
    assert bar.speed == ""  # files found done are no speed
    # Sizes came from the manifest: the rerun asked the server for nothing.
    assert FaultyHandler.requests == [] and FaultyHandler.heads == []


def test_log_lines_show_bytes_of_the_true_total(bucket, tmp_path, caplog):
    root, url = bucket
    with caplog.at_level(logging.INFO, logger="delf.download"):
        download(config_for(url, tmp_path / "gldv2_dataset"), LogProgress())
    total = true_total(root)
    shown = format_bytes(total)
    assert f"; {shown}/{shown} (100.0%)" in caplog.records[-1].getMessage()


@pytest.mark.parametrize("length", ["\u00b2", "-5", "12 34", ""])
def test_a_content_length_that_is_not_a_number_gives_no_size(length):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self):  # noqa: N802 (the http.server name)
            self.send_response(200)
            self.send_header("Content-Length", length)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/train/images_000.tar"
        assert remote_size(url, RetryPolicy()) is None
    finally:
        server.shutdown()
        server.server_close()
