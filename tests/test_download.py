"""The download step against a real HTTP mirror on 127.0.0.1, with injected faults."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import pytest

from delf_core.download import (
    DownloadConfig,
    RetryPolicy,
    download,
)
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests, write_md5, write_tar

FAST = RetryPolicy(retries=3, backoff_seconds=0.01, max_backoff_seconds=0.05, timeout_seconds=5)
TARS = {"train": 2, "index": 1, "test": 1}


@pytest.fixture()
def bucket(tmp_path):
    root = tmp_path / "bucket"
    contents = make_bucket(root, TARS)
    FaultyHandler.reset()
    with MirrorServer(root, handler=FaultyHandler) as server:
        yield root, server.url, contents


def config_for(url: str, out: Path, **overrides) -> DownloadConfig:
    values = dict(
        num_train=2,
        num_index=1,
        num_test=1,
        output_dir=str(out),
        base_url=url,
        max_workers=4,
        retry=FAST,
    )
    values.update(overrides)
    return DownloadConfig(**values)


def image_files(split_dir: Path) -> list[Path]:
    return sorted(split_dir.glob("*/*/*/*.jpg"))


def test_happy_path_lays_out_every_split_like_the_original(bucket, tmp_path):
    root, url, contents = bucket
    out = tmp_path / "gldv2_dataset"

    report = download(config_for(url, out))

    assert not report.failed
    assert report.images == 4 * 3
    for split, tars in contents.items():
        split_dir = out / split
        for remote in layout.METADATA_FILES[split]:
            assert (split_dir / remote.name).read_bytes() == (
                root / remote.bucket_path
            ).read_bytes()
        for index, (name, ids) in enumerate(sorted(tars.items())):
            assert (split_dir / name).read_bytes() == (root / split / name).read_bytes()
            assert (split_dir / layout.md5_name(index)).exists()
            for image_id in ids:
                image = split_dir / layout.image_relpath(image_id)
                assert image.read_bytes()[:2] == b"\xff\xd8"
        manifest = (split_dir / "download_manifest.json").read_text()
        for name in tars:
            assert name in manifest
    leftovers = [p for p in out.rglob("*") if p.name.endswith((".part", ".tmp"))]
    assert leftovers == []


def test_rerun_is_a_no_op(bucket, tmp_path):
    _, url, _ = bucket
    out = tmp_path / "out"
    download(config_for(url, out))
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    FaultyHandler.reset()

    report = download(config_for(url, out))

    assert FaultyHandler.requests == []
    assert report.count("skipped") == len(report.outcomes)
    after = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert after == before


def test_partial_file_resumes_with_a_range_request(bucket, tmp_path):
    root, url, contents = bucket
    out = tmp_path / "out"
    tar = root / "train" / "images_000.tar"
    half = tar.stat().st_size // 2
    (out / "train").mkdir(parents=True)
    (out / "train" / "images_000.tar.part").write_bytes(tar.read_bytes()[:half])

    report = download(config_for(url, out))

    assert not report.failed
    assert ("train/images_000.tar", f"bytes={half}-") in tar_requests()
    assert (out / "train" / "images_000.tar").read_bytes() == tar.read_bytes()


def test_connection_dropped_mid_body_resumes_where_it_stopped(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 1}, images_per_tar=4, image_bytes=300_000)
    FaultyHandler.reset({"train/images_000.tar": ["drop:700000"]})
    with MirrorServer(root, handler=FaultyHandler) as server:
        report = download(
            config_for(server.url, tmp_path / "out", num_train=1, num_index=0, num_test=0)
        )

    assert not report.failed
    (first, no_range), (second, ranged) = tar_requests()
    assert no_range is None
    resumed_at = int(ranged.removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at <= 700_000
    got = (tmp_path / "out" / "train" / "images_000.tar").read_bytes()
    assert got == (root / "train" / "images_000.tar").read_bytes()


def test_corrupt_body_is_downloaded_again(bucket, tmp_path):
    root, url, _ = bucket
    FaultyHandler.reset({"index/images_000.tar": ["corrupt"]})

    report = download(config_for(url, tmp_path / "out"))

    assert not report.failed
    assert [r[0] for r in tar_requests()].count("index/images_000.tar") == 2
    got = (tmp_path / "out" / "index" / "images_000.tar").read_bytes()
    assert got == (root / "index" / "images_000.tar").read_bytes()


def test_server_errors_are_retried_until_success(bucket, tmp_path):
    _, url, _ = bucket
    FaultyHandler.reset({"test/images_000.tar": ["500", "500"]})

    report = download(config_for(url, tmp_path / "out"))

    assert not report.failed
    assert [r[0] for r in tar_requests()].count("test/images_000.tar") == 3


def test_md5_that_never_matches_fails_and_is_never_unpacked(bucket, tmp_path):
    root, url, contents = bucket
    write_md5(root, "train", 1, "0" * 32)
    out = tmp_path / "out"

    report = download(config_for(url, out))

    assert [(o.split, o.name) for o in report.failed] == [("train", "images_001.tar")]
    assert "images_001.tar" in report.failed[0].error
    assert "md5" in report.failed[0].error
    assert [r[0] for r in tar_requests()].count("train/images_001.tar") == FAST.retries + 1
    for image_id in contents["train"]["images_001.tar"]:
        assert not (out / "train" / layout.image_relpath(image_id)).exists()
    assert not (out / "train" / "images_001.tar").exists()
    assert not (out / "train" / "images_001.tar.part").exists()
    # The other tars are complete.
    for image_id in contents["train"]["images_000.tar"]:
        assert (out / "train" / layout.image_relpath(image_id)).exists()
    # Once the bucket is mended, a rerun fetches the md5 file afresh and finishes.
    write_md5(
        root, "train", 1, hashlib.md5((root / "train/images_001.tar").read_bytes()).hexdigest()
    )
    assert not download(config_for(url, out)).failed
    for image_id in contents["train"]["images_001.tar"]:
        assert (out / "train" / layout.image_relpath(image_id)).exists()


def test_missing_tar_is_one_clear_error_without_retries(bucket, tmp_path):
    _, url, _ = bucket

    report = download(config_for(url, tmp_path / "out", num_train=3))

    assert [o.name for o in report.failed] == ["images_002.tar"]
    error = report.failed[0].error
    assert "404" in error and "md5.images_002.txt" in error
    assert "\n" not in error
    md5_gets = [r for r in FaultyHandler.requests if r[0].endswith("md5.images_002.txt")]
    assert len(md5_gets) == 1


@pytest.mark.parametrize(
    "member, kind",
    [
        ("../escaped.jpg", "file"),
        ("/tmp/absolute.jpg", "file"),
        ("a/b/c/link.jpg", "symlink"),
        ("a/b/c/hard.jpg", "hardlink"),
        ("a/b/c/dev", "device"),
    ],
)
def test_hostile_tar_is_refused_and_writes_nothing(bucket, tmp_path, member, kind):
    root, url, _ = bucket
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        good = tarfile.TarInfo("0/0/0/0000000000000000.jpg")
        good.size = 4
        archive.addfile(good, io.BytesIO(b"\xff\xd8ok"))
        info = tarfile.TarInfo(member)
        if kind == "symlink":
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
        elif kind == "hardlink":
            info.type, info.linkname = tarfile.LNKTYPE, "0/0/0/0000000000000000.jpg"
        elif kind == "device":
            info.type = tarfile.CHRTYPE
        else:
            info.size = 4
        archive.addfile(info, io.BytesIO(b"evil") if kind == "file" else None)
    tar = root / "test" / "images_000.tar"
    tar.write_bytes(buffer.getvalue())
    write_md5(root, "test", 0, hashlib.md5(buffer.getvalue()).hexdigest())
    out = tmp_path / "deep" / "out"

    report = download(config_for(url, out))

    assert [o.name for o in report.failed] == ["images_000.tar"]
    assert member in report.failed[0].error
    assert not (out / "test" / "0").exists()
    assert not (tmp_path / "deep" / "escaped.jpg").exists()
    assert not Path("/tmp/absolute.jpg").exists()


def test_concurrency_stays_within_max_workers(tmp_path):
    root = tmp_path / "bucket"
    make_bucket(root, {"train": 6})
    # Each tar is answered once two are asked for at once: a third would show up here.
    FaultyHandler.reset({f"train/images_{i:03d}.tar": ["crowd:2"] for i in range(6)})
    with MirrorServer(root, handler=FaultyHandler) as server:
        report = download(
            config_for(
                server.url, tmp_path / "out", num_train=6, num_index=0, num_test=0, max_workers=2
            )
        )
    assert not report.failed
    assert FaultyHandler.max_in_flight == 2


def test_delete_tars_keeps_images_and_rerun_stays_a_no_op(bucket, tmp_path):
    _, url, contents = bucket
    out = tmp_path / "out"

    download(config_for(url, out, delete_tars=True))
    FaultyHandler.reset()
    report = download(config_for(url, out, delete_tars=True))

    assert list(out.rglob("*.tar")) == []
    assert len(image_files(out / "train")) == 6
    assert tar_requests() == []
    assert report.count("skipped") == len(report.outcomes)


def test_tar_left_complete_by_a_killed_run_is_verified_not_refetched(bucket, tmp_path):
    root, url, _ = bucket
    out = tmp_path / "out"
    (out / "index").mkdir(parents=True)
    (out / "index" / "images_000.tar").write_bytes((root / "index" / "images_000.tar").read_bytes())

    report = download(config_for(url, out))

    assert not report.failed
    assert "index/images_000.tar" not in [r[0] for r in tar_requests()]
    assert len(image_files(out / "index")) == 3


@pytest.mark.parametrize("counts", [(501, 0, 0), (0, 101, 0), (0, 0, 21), (-1, 0, 0)])
def test_tar_counts_beyond_the_dataset_are_rejected(counts):
    config = DownloadConfig(*counts)
    with pytest.raises(ValueError, match="NUM_"):
        config.validate()


def test_backoff_grows_and_is_capped():
    policy = RetryPolicy(backoff_seconds=1.0, max_backoff_seconds=8.0)
    for attempt, base in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 8.0)]:
        delays = [policy.delay(attempt) for _ in range(50)]
        assert all(base / 2 <= d <= base for d in delays)
        assert len(set(delays)) > 1  # jittered


def test_write_tar_helper_is_a_valid_tar(tmp_path):
    digest = write_tar(tmp_path / "x.tar", {"a/b/c/x.jpg": b"123"})
    assert hashlib.md5((tmp_path / "x.tar").read_bytes()).hexdigest() == digest


def test_a_stalled_response_times_out_and_is_retried(bucket, tmp_path):
    _, url, _ = bucket
    FaultyHandler.reset({"train/images_000.tar": ["stall"]})
    patient_for_half_a_second = RetryPolicy(retries=2, backoff_seconds=0.01, timeout_seconds=0.5)

    report = download(config_for(url, tmp_path / "out", retry=patient_for_half_a_second))

    assert not report.failed
    assert [r[0] for r in tar_requests()].count("train/images_000.tar") == 2
