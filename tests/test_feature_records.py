"""The sharded per-image records of a features folder: bounded files, old manifests, damage."""

from __future__ import annotations

import json
import logging

import pytest

from delf_core.features.extract import ImageItem
from delf_core.features.extract_job import MANIFEST_NAME
from delf_core.features.presets import DELG_PRESET, load_preset
from delf_core.features.record import (
    features_fingerprint,
    features_stand,
    record_entry,
    record_features,
    record_store,
    remove_stale,
)
from delf_core.features.record_store import INDEX_NAME, RECORDS_DIR, RecordStore, shard_of

SOURCE = "a" * 64


@pytest.fixture(scope="module")
def config():
    return load_preset(DELG_PRESET, "/models/delg")


def _folder(tmp_path, count: int) -> tuple[list[ImageItem], str]:
    """`count` images whose two DELG feature files exist in the folder."""
    out = tmp_path / "features"
    out.mkdir()
    items = [ImageItem(f"img{i:04d}", f"/images/img{i:04d}.jpg") for i in range(count)]
    for item in items:
        for suffix in (".delg_local", ".delg_global"):
            (out / f"{item.name}{suffix}").write_bytes(b"")
    return items, str(out)


def _record_files(out: str) -> list:
    from pathlib import Path

    return [p for p in (Path(out) / RECORDS_DIR).rglob("records-*.json")]


def test_records_round_trip_in_shards_each_under_the_bound(tmp_path):
    out = str(tmp_path)
    store = RecordStore(out, MANIFEST_NAME, max_shard_bytes=2_000)
    entries = {f"image{i:05d}": {"path": f"/i/{i}.jpg", "source": SOURCE} for i in range(600)}

    store.update(entries)
    store.update({"image00000": None, "image00001": {"path": "/new.jpg", "source": "b"}})

    expected = {**entries, "image00001": {"path": "/new.jpg", "source": "b"}}
    del expected["image00000"]
    assert store.read() == expected
    assert store.read(["image00002", "missing"]) == {"image00002": entries["image00002"]}
    files = _record_files(out)
    assert len(files) > 16 and all(f.stat().st_size <= 2_000 for f in files)
    index = json.loads((tmp_path / RECORDS_DIR / INDEX_NAME).read_text())
    assert index["shards"] > 16 and len(files) == len(index["digests"])
    # The shard of a name is the same in every process: a stable hash, not Python's.
    assert shard_of("image00002", 64) == shard_of("image00002", 64) < 64


def test_an_old_single_file_manifest_is_honoured_then_rewritten_in_shards(tmp_path, config):
    items, out = _folder(tmp_path, 30)
    old = {item.name: record_entry(item, SOURCE) for item in items}
    manifest = {"step": "extract_features", "images": old, "generation": "g1", "counts": {}}
    (tmp_path / "features" / MANIFEST_NAME).write_text(json.dumps(manifest))

    assert features_stand(items, out, config, True, SOURCE)
    assert remove_stale(items, out, config, True, SOURCE) == 0
    record_features(items, out, SOURCE, set(), rewritten=False)

    rewritten = json.loads((tmp_path / "features" / MANIFEST_NAME).read_text())
    assert "images" not in rewritten and rewritten["generation"] == "g1"
    assert rewritten["counts"] == {}  # the job's own fields are kept
    assert record_store(out).read() == old
    assert features_stand(items, out, config, True, SOURCE)
    # Another model's records make the images stale.
    assert not features_stand(items, out, config, True, "b" * 64)


def test_a_damaged_shard_reads_as_not_recorded_with_one_warning(tmp_path, config, caplog):
    items, out = _folder(tmp_path, 40)
    record_features(items, out, SOURCE, set(), rewritten=True)
    before = features_fingerprint(out)
    damaged = sorted(_record_files(out))[0]
    damaged.write_text('{"img0001": {"path": ')  # cut short

    with caplog.at_level(logging.WARNING, logger="delf_core.features.record_store"):
        assert not features_stand(items, out, config, True, SOURCE)
        removed = remove_stale(items, out, config, True, SOURCE)

    index = json.loads((tmp_path / "features" / RECORDS_DIR / INDEX_NAME).read_text())
    lost = [i for i in items if f"{shard_of(i.name, index['shards']):05d}" in damaged.name]
    assert lost and removed == 2 * len(lost)  # both files of each, and no other image's
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and all(str(damaged) in w and "\n" not in w for w in warnings)
    # Redone and recorded again: the folder stands and its fingerprint changed.
    for item in lost:
        for suffix in (".delg_local", ".delg_global"):
            (tmp_path / "features" / f"{item.name}{suffix}").write_bytes(b"x")
    record_features(items, out, SOURCE, set(), rewritten=True)
    assert features_stand(items, out, config, True, SOURCE)
    assert features_fingerprint(out) != before


def test_failed_images_lose_their_record(tmp_path, config):
    items, out = _folder(tmp_path, 5)
    record_features(items, out, SOURCE, set(), rewritten=True)
    record_features(items, out, SOURCE, {"img0003"}, rewritten=True)
    assert set(record_store(out).read()) == {i.name for i in items} - {"img0003"}
    assert not features_stand(items, out, config, True, SOURCE)
