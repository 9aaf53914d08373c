"""The download's progress counts true bytes: the bar's total is the files' real size."""

from __future__ import annotations

import logging

import pytest

from delf_cli.progress import BarProgress, LogProgress
from delf_core.download import download
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
