"""Unpacking while the bytes arrive: published only on commit, abandoned on any doubt."""

from __future__ import annotations

import io
import tarfile

from delf_core.download.stream_untar import StreamingUnpacker
from tests.bucket import write_tar


def feed(unpacker: StreamingUnpacker, data: bytes, chunk: int = 1000, start: int = 0) -> None:
    for offset in range(start, len(data), chunk):
        unpacker(offset, data[offset : offset + chunk])


def a_tar(tmp_path) -> tuple[bytes, dict[str, bytes]]:
    members = {f"a/b/{c}/ab{c}{i:013x}.jpg": bytes([i]) * (700 + i) for c in "cd" for i in range(3)}
    path = tmp_path / "x.tar"
    write_tar(path, members)
    return path.read_bytes(), members


def test_files_appear_in_the_split_only_on_commit(tmp_path):
    data, members = a_tar(tmp_path)
    split = tmp_path / "split"
    (split / "a" / "b" / "c").mkdir(parents=True)  # one folder exists, one is new
    unpacker = StreamingUnpacker(split / ".unpack-x.tar", "x.tar")

    feed(unpacker, data)
    assert unpacker.finish(len(data))
    assert not list(split.glob("a/b/*/*.jpg"))
    assert unpacker.commit(split).images == 6

    for name, payload in members.items():
        assert (split / name).read_bytes() == payload
    assert not (split / ".unpack-x.tar").exists()


def test_a_gap_in_the_stream_gives_up_and_leaves_nothing(tmp_path):
    data, _ = a_tar(tmp_path)
    unpacker = StreamingUnpacker(tmp_path / "staging", "x.tar")
    feed(unpacker, data[:3000])
    feed(unpacker, data, start=5000)  # a resumed download the unpacker did not see
    assert not unpacker.finish(len(data))
    unpacker.discard()
    assert not (tmp_path / "staging").exists()


def test_a_restart_from_zero_gives_up(tmp_path):
    data, _ = a_tar(tmp_path)
    unpacker = StreamingUnpacker(tmp_path / "staging", "x.tar")
    feed(unpacker, data)
    feed(unpacker, data)  # a second attempt after a bad md5
    assert not unpacker.finish(len(data))


def test_a_hostile_member_fails_the_stream_without_blocking_the_download(tmp_path):
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        info = tarfile.TarInfo("../evil.jpg")
        info.size = 200_000
        archive.addfile(info, io.BytesIO(b"x" * 200_000))
    data = buffer.getvalue() * 40  # far more than the queue holds
    unpacker = StreamingUnpacker(tmp_path / "staging", "x.tar")
    feed(unpacker, data, chunk=65536)
    assert not unpacker.finish(len(data))
    unpacker.discard()
    assert not (tmp_path / "evil.jpg").exists()


def test_a_stream_cut_short_is_not_committed(tmp_path):
    data, _ = a_tar(tmp_path)
    unpacker = StreamingUnpacker(tmp_path / "staging", "x.tar")
    feed(unpacker, data[: len(data) // 2])
    assert not unpacker.finish(len(data))
