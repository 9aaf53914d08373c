"""Tars built to harm: sparse bombs, member floods, names of the split's own files, clashes.

Each tar is served by a real mirror on 127.0.0.1 with its correct md5, so only the
unpacking stands between it and the split folder. "streaming" unpacks a fresh download
as it arrives; "verified" unpacks a complete tar found in place (a rerun after a kill).
"""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.download.members import UnpackLimits
from delf_core.download.stream_untar import StreamingUnpacker
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from tests.bucket import FaultyHandler, make_bucket, tar_requests, write_md5

FAST = RetryPolicy(retries=1, backoff_seconds=0.01, max_backoff_seconds=0.02, timeout_seconds=10)
IMAGE = "0/0/0/0000000000000000.jpg"
OTHER_IMAGE = "1/2/3/1230000000000000.jpg"
# Big enough to notice on disk, small enough that the code before the fix survives it.
SPARSE_SIZE = 64 * 2**20


def tar_bytes(members: list[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=fmt) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def sparse_tar(kind: str) -> bytes:
    """A tar of a few KB whose one member unpacks to SPARSE_SIZE bytes of zeros."""
    if kind == "gnu":  # old GNU sparse: type 'S' and the map in the header
        info = tarfile.TarInfo(IMAGE)
        info.size, info.type = 512, tarfile.GNUTYPE_SPARSE
        header = bytearray(info.tobuf(format=tarfile.GNU_FORMAT))
        header[386:398] = b"%011o\0" % (SPARSE_SIZE - 512)  # data offset
        header[398:410] = b"%011o\0" % 512  # data bytes
        header[483:495] = b"%011o\0" % SPARSE_SIZE  # real size
        header[148:156] = b" " * 8
        header[148:156] = b"%06o\0 " % sum(header[:512])
        return bytes(header[:512]) + b"\xff" * 512 + b"\0" * 10240
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        if kind == "pax1.0":  # the map leads the data
            sparse_map = b"1\n%d\n512\n" % (SPARSE_SIZE - 512)
            data = sparse_map.ljust(512, b"\0") + b"\xff" * 512
            info = tarfile.TarInfo("GNUSparseFile.0/0000000000000000.jpg")
            info.pax_headers = {
                "GNU.sparse.major": "1",
                "GNU.sparse.minor": "0",
                "GNU.sparse.name": IMAGE,
                "GNU.sparse.realsize": str(SPARSE_SIZE),
            }
        else:  # pax 0.1: the map in the header
            data = b"\xff" * 512
            info = tarfile.TarInfo(IMAGE)
            info.pax_headers = {
                "GNU.sparse.map": f"{SPARSE_SIZE - 512},512",
                "GNU.sparse.size": str(SPARSE_SIZE),
                "GNU.sparse.numblocks": "1",
            }
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture()
def bucket(tmp_path):
    root = tmp_path / "bucket"
    contents = make_bucket(root, {"train": 2, "test": 1})
    FaultyHandler.reset()
    with MirrorServer(root, handler=FaultyHandler) as server:
        yield root, server.url, contents


def serve_tar(root: Path, split: str, index: int, data: bytes) -> None:
    (root / layout.tar_bucket_path(split, index)).write_bytes(data)
    write_md5(root, split, index, hashlib.md5(data).hexdigest())


def run(url: str, out: Path, path: str, data: bytes | None = None, **overrides):
    """Downloads test/images_000.tar (and the CSVs); `verified` finds the tar in place."""
    if path == "verified":
        (out / "test").mkdir(parents=True, exist_ok=True)
        (out / "test" / "images_000.tar").write_bytes(data)
    values = dict(num_train=0, num_index=0, num_test=1, output_dir=str(out), base_url=url)
    values.update(max_workers=2, retry=FAST, **overrides)
    report = download(DownloadConfig(**values))
    return {(o.split, o.name): o for o in report.outcomes}


def largest_file(folder: Path) -> int:
    return max((p.stat().st_size for p in folder.rglob("*") if p.is_file()), default=0)


def one_line(error: str) -> str:
    assert error and "\n" not in error and "[Errno" not in error and "Traceback" not in error
    return error


@pytest.mark.parametrize("path", ["streaming", "verified"])
@pytest.mark.parametrize("kind", ["gnu", "pax0.1", "pax1.0"])
def test_a_sparse_member_is_refused_before_it_expands(bucket, tmp_path, kind, path):
    root, url, _ = bucket
    data = sparse_tar(kind)
    assert len(data) < 32_000
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, path, data)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    error = one_line(outcome.error)
    assert "images_000.tar" in error and IMAGE in error and "sparse" in error
    assert not (out / "test" / IMAGE).exists()
    assert largest_file(out) < 1_000_000  # nothing expanded, not even in staging
    assert not list((out / "test").glob(".unpack-*"))


def test_the_streaming_unpacker_writes_no_byte_of_a_sparse_member(tmp_path):
    data = sparse_tar("pax0.1")
    staging = tmp_path / "staging"
    unpacker = StreamingUnpacker(staging, "images_000.tar")
    for offset in range(0, len(data), 1000):
        unpacker(offset, data[offset : offset + 1000])

    assert not unpacker.finish(len(data))
    assert largest_file(staging) == 0
    unpacker.discard()


@pytest.mark.parametrize("path", ["streaming", "verified"])
@pytest.mark.parametrize(
    "members, member_bytes, limits, flag",
    [
        (30, 10, UnpackLimits(max_tar_members=20), "--max_tar_members"),
        (3, 3000, UnpackLimits(max_unpacked_bytes=5000), "--max_unpacked_bytes"),
    ],
    ids=["more_members_than_allowed", "unpacking_beyond_the_ceiling"],
)
def test_a_tar_beyond_a_limit_is_refused_whole(
    bucket, tmp_path, path, members, member_bytes, limits, flag
):
    root, url, _ = bucket
    ids = [f"abc{k:013x}" for k in range(members)]
    data = tar_bytes([(layout.image_relpath(i), b"\xff\xd8" + bytes(member_bytes)) for i in ids])
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, path, data, limits=limits)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    assert flag in one_line(outcome.error)
    # None of it: not the members unpacked before the limit was reached.
    assert not list((out / "test").glob("*/*/*/*.jpg"))


@pytest.mark.parametrize("path", ["streaming", "verified"])
def test_members_declaring_more_bytes_than_the_tar_holds_are_refused(bucket, tmp_path, path):
    root, url, _ = bucket
    whole = tar_bytes([(IMAGE, b"\xff\xd8" + bytes(100)), (OTHER_IMAGE, bytes(600_000))])
    data = whole[:50_000]  # the second member's header promises far more than follows
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, path, data)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    error = one_line(outcome.error)
    assert OTHER_IMAGE in error and "more than the tar" in error
    assert not (out / "test" / IMAGE).exists()  # the good member before it is not kept


OWN_FILES = [
    "download_manifest.json",
    "train_clean.csv",
    "md5.images_001.txt",
    ".download_manifest/tars/images_001.tar.json",
]


@pytest.mark.parametrize("member", OWN_FILES)
def test_a_member_named_like_the_splits_own_files_never_replaces_them(bucket, tmp_path, member):
    root, url, contents = bucket
    claim_done = {"size": 1, "md5": "0" * 32, "images": 3, "tar_kept": True}
    fake = {
        "download_manifest.json": json.dumps({"tars": {"images_001.tar": claim_done}}),
        "train_clean.csv": "landmark_id,images\n1,ffffffffffffffff\n",
        "md5.images_001.txt": layout.md5_line("0" * 32, "images_001.tar"),
    }.get(member, json.dumps(claim_done))
    ids = contents["train"]["images_000.tar"]
    data = tar_bytes([(layout.image_relpath(ids[0]), b"\xff\xd8ok"), (member, fake.encode())])
    serve_tar(root, "train", 0, data)
    out = tmp_path / "out"
    config = dict(num_index=0, num_test=0, output_dir=str(out), base_url=url, retry=FAST)

    first = download(DownloadConfig(num_train=1, **config))
    second = download(DownloadConfig(num_train=2, **config))

    (refused,) = first.failed
    assert refused.name == "images_000.tar" and member in one_line(refused.error)
    assert not (out / "train" / layout.image_relpath(ids[0])).exists()
    train = out / "train"
    assert (train / "train_clean.csv").read_bytes() == (
        root / "metadata/train_clean.csv"
    ).read_bytes()
    # The next run did fetch and unpack the tar the member claimed was done.
    assert "train/images_001.tar" in [path for path, _ in tar_requests()]
    assert [o.name for o in second.failed] == ["images_000.tar"]
    for image_id in contents["train"]["images_001.tar"]:
        assert (train / layout.image_relpath(image_id)).exists()
    assert "images_000.tar" not in (train / "download_manifest.json").read_text()


def test_members_that_are_not_images_are_left_out_and_counted(bucket, tmp_path):
    root, url, _ = bucket
    data = tar_bytes(
        [
            (IMAGE, b"\xff\xd8ok"),
            ("README.txt", b"hello"),
            ("0/0/0/not-an-id.jpg", b"x"),
            ("0/0/0/0000000000000000.JPG", b"x"),
            ("a/b", b"a file where another member needs a folder"),
            ("a/b/c/abc0000000000000.jpg", b"\xff\xd8ok"),
        ]
    )
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, "streaming")[("test", "images_000.tar")]

    assert outcome.status == "downloaded", outcome.error
    assert (outcome.images, outcome.skipped_members) == (2, 4)
    assert sorted(p.relative_to(out / "test").as_posix() for p in out.rglob("*.jpg")) == [
        IMAGE,
        "a/b/c/abc0000000000000.jpg",
    ]
    assert not (out / "test" / "README.txt").exists()
    assert (out / "test" / "a" / "b").is_dir()


@pytest.mark.parametrize("path", ["streaming", "verified"])
def test_a_member_with_an_empty_name_fails_the_tar_and_writes_nothing(bucket, tmp_path, path):
    root, url, _ = bucket
    data = tar_bytes([(IMAGE, b"\xff\xd8ok"), ("", b"no name")])
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, path, data)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    error = one_line(outcome.error)
    assert "images_000.tar" in error and "empty name" in error
    assert not (out / "test" / "0").exists()


@pytest.mark.parametrize("path", ["streaming", "verified"])
@pytest.mark.parametrize("obstacle", ["file where a folder goes", "folder where a file goes"])
def test_something_in_the_way_in_the_split_fails_the_tar_whole(bucket, tmp_path, path, obstacle):
    root, url, _ = bucket
    data = tar_bytes([(IMAGE, b"\xff\xd8ok"), (OTHER_IMAGE, b"\xff\xd8ok")])
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"
    if obstacle == "file where a folder goes":
        (out / "test" / "1").mkdir(parents=True)
        (out / "test" / "1" / "2").write_text("not a folder")
    else:
        (out / "test" / OTHER_IMAGE).mkdir(parents=True)

    outcome = run(url, out, path, data)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    error = one_line(outcome.error)
    assert "images_000.tar" in error and OTHER_IMAGE in error
    assert not (out / "test" / IMAGE).exists()  # all of the tar or none of it
    # Once the user moves it away, a rerun finishes.
    obstacle_path = out / "test" / ("1/2" if obstacle.startswith("file") else OTHER_IMAGE)
    obstacle_path.unlink() if obstacle_path.is_file() else obstacle_path.rmdir()
    rerun = run(url, out, "streaming")[("test", "images_000.tar")]
    assert rerun.status == "downloaded" and rerun.images == 2


@pytest.mark.parametrize("path", ["streaming", "verified"])
def test_a_huge_extended_header_is_refused_before_it_is_read(bucket, tmp_path, path):
    root, url, _ = bucket
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        info = tarfile.TarInfo(IMAGE)
        info.size = 4
        info.pax_headers = {"comment": "x" * 2_000_000}  # tarfile would hold it in memory
        archive.addfile(info, io.BytesIO(b"\xff\xd8ok"))
    data = buffer.getvalue()
    serve_tar(root, "test", 0, data)
    out = tmp_path / "out"

    outcome = run(url, out, path, data)[("test", "images_000.tar")]

    assert outcome.status == "failed"
    assert "extended header" in one_line(outcome.error)
    assert not (out / "test" / IMAGE).exists()
