"""The per-split download manifest under concurrent writers, and what readers get from it."""

from __future__ import annotations

import json
import multiprocessing
import shutil
import time

import fsspec

from delf_core import storage
from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.download.manifest import SplitManifest
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests

PROCESSES = 4
RECORDS_EACH = 40
ENTRY = {"size": 10240, "md5": "0" * 32, "images": 3, "tar_kept": True}


def record_tars(split_dir: str, first: int, count: int, start) -> None:
    """Runs in a spawned process: records `count` tars once every process is ready."""
    manifest = SplitManifest(fsspec.filesystem("file"), split_dir, "train")
    start.wait(timeout=600)
    for index in range(first, first + count):
        manifest.record("tars", layout.tar_name(index), dict(ENTRY), "http://mirror")


def test_processes_recording_at_once_lose_no_entry(tmp_path):
    split_dir = str(tmp_path / "train")
    (tmp_path / "train").mkdir()
    context = multiprocessing.get_context("spawn")
    start = context.Event()
    processes = [
        context.Process(target=record_tars, args=(split_dir, k * RECORDS_EACH, RECORDS_EACH, start))
        for k in range(PROCESSES)
    ]
    for process in processes:
        process.start()
    start.set()
    deadline = time.monotonic() + 600
    for process in processes:
        process.join(timeout=max(1.0, deadline - time.monotonic()))
        assert process.exitcode == 0, "a recording process failed or hung"

    manifest = SplitManifest(fsspec.filesystem("file"), split_dir, "train")
    expected = {layout.tar_name(i) for i in range(PROCESSES * RECORDS_EACH)}
    assert set(manifest.load()["tars"]) == expected
    assert all(manifest.tar_entry(name) is not None for name in expected)
    manifest.write_summary("http://mirror")
    summary = json.loads((tmp_path / "train" / "download_manifest.json").read_text())
    assert set(summary["tars"]) == expected
    assert summary["images"] == 3 * len(expected)


def test_a_split_recorded_by_an_older_version_is_still_done(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 1})
    out = tmp_path / "out"
    FaultyHandler.reset()
    with MirrorServer(root, handler=FaultyHandler) as server:
        config = DownloadConfig(1, 0, 0, output_dir=str(out), base_url=server.url)
        assert not download(config).failed
        # What the version before per-tar records left: the summary alone.
        fs, split_dir = fsspec.filesystem("file"), str(out / "train")
        entry = SplitManifest(fs, split_dir, "train").tar_entry("images_000.tar")
        shutil.rmtree(out / "train" / ".download_manifest")
        summary = {"step": "download", "tars": {"images_000.tar": entry}}
        storage.write_json(fs, f"{split_dir}/download_manifest.json", summary)
        FaultyHandler.reset()

        again = download(config)

    assert tar_requests() == []
    assert again.count("skipped") == len(again.outcomes)


def test_the_summary_is_rewritten_only_when_a_record_changed(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"index": 2})
    out = tmp_path / "out"
    with MirrorServer(root) as server:
        config = DownloadConfig(
            0, 2, 0, output_dir=str(out), base_url=server.url, retry=RetryPolicy(retries=0)
        )
        download(config)
        summary = out / "index" / "download_manifest.json"
        first = summary.stat().st_mtime_ns
        data = json.loads(summary.read_text())
        assert sorted(data["tars"]) == ["images_000.tar", "images_001.tar"]
        assert data["images"] == 6 and set(data["metadata"]) == {
            r.name for r in layout.METADATA_FILES["index"]
        }
        download(config)
        assert summary.stat().st_mtime_ns == first
