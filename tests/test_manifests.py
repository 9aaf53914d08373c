"""delf_core.manifests: a missing or half-written manifest reads as None, never as an error."""

from __future__ import annotations

import pytest

from delf_core import manifests, storage


@pytest.fixture(params=["local", "memory"])
def root(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path)
    return f"memory://manifests-{tmp_path.name}"


def test_missing_and_half_written_manifests_read_as_none(root):
    assert manifests.read_json(f"{root}/none.json") is None
    assert manifests.read_text(f"{root}/none.txt") is None
    manifests.write_json(f"{root}/whole.json", {"b": [1, 2], "a": None})
    assert manifests.read_json(f"{root}/whole.json") == {"a": None, "b": [1, 2]}
    # A kill mid-write on an object store leaves the first bytes only.
    text = manifests.read_text(f"{root}/whole.json")
    manifests.write_json(f"{root}/cut.json", {})
    fs, path = storage.resolve(f"{root}/cut.json")
    storage.write_bytes(fs, path, text[: len(text) // 2].encode())
    assert manifests.read_json(f"{root}/cut.json") is None
    storage.write_bytes(fs, path, b"\xff\xfe not utf-8")
    assert manifests.read_text(f"{root}/cut.json") is None


def test_a_folder_in_place_of_a_manifest_reads_as_none(tmp_path):
    (tmp_path / "manifest.json").mkdir()
    assert manifests.read_json(str(tmp_path / "manifest.json")) is None


def test_sha256_of_a_file_or_none(root):
    assert manifests.sha256_file(f"{root}/none") is None
    manifests.write_json(f"{root}/a.json", [1])
    assert manifests.sha256_file(f"{root}/a.json") == manifests.sha256_file(f"{root}/a.json")
    manifests.write_json(f"{root}/b.json", [2])
    assert manifests.sha256_file(f"{root}/a.json") != manifests.sha256_file(f"{root}/b.json")


def test_fingerprint_ignores_key_order_and_sees_values():
    assert manifests.fingerprint({"a": 1, "b": [2]}) == manifests.fingerprint({"b": [2], "a": 1})
    assert manifests.fingerprint({"a": 1}) != manifests.fingerprint({"a": 2})


def test_set_aside_keeps_one_previous_generation(tmp_path):
    folder = tmp_path / "export"
    assert manifests.set_aside(str(folder)) is None
    for generation in ("first", "second"):
        folder.mkdir()
        (folder / "which").write_text(generation)
        assert manifests.set_aside(f"{folder}/") == f"{folder}.previous"
        assert not folder.exists()
    assert (tmp_path / "export.previous" / "which").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["export.previous"]
