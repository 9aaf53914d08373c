"""Whole-or-nothing writes that also survive a power cut: bytes synced before the rename."""

from __future__ import annotations

import os

import fsspec
import pytest

from delf_core import storage


@pytest.fixture()
def disk_calls(monkeypatch):
    """Records fsync and rename calls, in order, as (call, path)."""
    calls: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        calls.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src, dst) -> None:
        calls.append(("replace", os.fspath(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_a_manifest_is_synced_before_its_rename_and_its_folder_after(tmp_path, disk_calls):
    fs = fsspec.filesystem("file")
    target = str(tmp_path / "manifest.json")

    storage.write_json(fs, target, {"step": "download"})

    assert storage.read_json(fs, target) == {"step": "download"}
    (synced_tmp, renamed, synced_folder) = disk_calls
    assert synced_tmp[0] == "fsync" and synced_tmp[1].endswith(".tmp")
    assert renamed == ("replace", target)
    assert synced_folder == ("fsync", str(tmp_path))


def test_a_finished_folder_is_synced_file_by_file_before_it_is_renamed(tmp_path, disk_calls):
    staging = tmp_path / ".staging"
    (staging / "variables").mkdir(parents=True)
    (staging / "saved_model.pb").write_bytes(b"model")
    (staging / "variables" / "variables.index").write_bytes(b"index")

    storage.durable_replace(staging, tmp_path / "export")

    assert (tmp_path / "export" / "variables" / "variables.index").read_bytes() == b"index"
    rename_at = disk_calls.index(("replace", str(tmp_path / "export")))
    synced_before = {path for call, path in disk_calls[:rename_at] if call == "fsync"}
    assert {
        str(staging / "saved_model.pb"),
        str(staging / "variables" / "variables.index"),
        str(staging / "variables"),
    } <= synced_before
    assert disk_calls[rename_at + 1] == ("fsync", str(tmp_path))


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    fs = fsspec.filesystem("file")
    target = tmp_path / "manifest.json"
    storage.write_json(fs, str(target), {"version": 1})

    with pytest.raises(RuntimeError), storage.atomic_open(fs, str(target)) as handle:
        handle.write(b"{half a")
        raise RuntimeError("killed mid-write")

    assert storage.read_json(fs, str(target)) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
