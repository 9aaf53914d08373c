"""The descriptor matrix cache: round trip, reuse, rebuild on change, damaged files, block reads."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import fsspec
import numpy as np
import pytest

from delf_core.features import datum_io
from delf_core.retrieval import descriptor_matrix as dm
from delf_core.retrieval.descriptor_matrix import MATRIX_NAME, descriptor_matrix

# 64-byte rows: a block that starts past the first 4096 bytes needs an aligned mapping.
ROWS, DIM = 300, 16


def write_features(folder: Path, names, values) -> None:
    for name, row in zip(names, values, strict=True):
        path = folder / f"{name}.delg_global"
        path.parent.mkdir(parents=True, exist_ok=True)
        # Not datum_io.write_to_file: its fsync per file would cost seconds here.
        path.write_bytes(datum_io.serialize_to_string(row))


@pytest.fixture
def features(tmp_path):
    values = np.random.default_rng(0).standard_normal((ROWS, DIM)).astype(np.float32)
    names = [f"{i % 7}/{i % 3}/{i % 5}/{i:016x}" for i in range(ROWS)]
    folder = tmp_path / "index"
    write_features(folder, names, values)
    return folder, names, values


@pytest.fixture
def reads(monkeypatch):
    """Counts descriptor files read."""
    counted = []
    real = dm.read_global_descriptor

    def read(path):
        counted.append(path)
        return real(path)

    monkeypatch.setattr(dm, "read_global_descriptor", read)
    return counted


def cache_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".descriptor_matrix"))


def test_the_matrix_round_trips_in_blocks_and_is_reused_without_reading_a_file(features, reads):
    folder, names, values = features

    first = descriptor_matrix(str(folder), names, chunk_rows=7, num_threads=4)

    assert first.shape == (ROWS, DIM) and len(reads) == ROWS
    assert first.path == str(folder / f"{MATRIX_NAME}.rows.f32")
    for start, stop in ((0, ROWS), (0, 1), (13, 29), (100, 190), (290, 1000), (ROWS, ROWS + 5)):
        block = first[start:stop]
        assert block.dtype == np.float32
        np.testing.assert_array_equal(block, values[start:stop])
    assert os.path.getsize(first.path) == ROWS * DIM * 4

    reads.clear()
    again = descriptor_matrix(str(folder), names)
    assert reads == []
    np.testing.assert_array_equal(again[0:ROWS], values)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_a_block_read_leaves_nothing_of_the_file_mapped(features):
    folder, names, _ = features
    matrix = descriptor_matrix(str(folder), names)
    block = matrix[100:200]
    assert block.base is None or not isinstance(block.base, np.memmap)
    assert matrix.path not in Path("/proc/self/maps").read_text()


def test_a_changed_added_or_removed_file_rebuilds_the_matrix(features, reads):
    folder, names, values = features
    descriptor_matrix(str(folder), names)

    # Same size, new values, a later modification time.
    changed = values.copy()
    changed[5] = -changed[5]
    write_features(folder, names[5:6], changed[5:6])
    stamp = os.stat(folder / f"{names[5]}.delg_global").st_mtime_ns + 10**9
    os.utime(folder / f"{names[5]}.delg_global", ns=(stamp, stamp))
    reads.clear()
    rebuilt = descriptor_matrix(str(folder), names)
    assert len(reads) == ROWS
    np.testing.assert_array_equal(rebuilt[0:ROWS], changed)

    added = np.ones((1, DIM), np.float32)
    write_features(folder, ["extra"], added)
    more = descriptor_matrix(str(folder), [*names, "extra"])
    np.testing.assert_array_equal(more[ROWS : ROWS + 1], added)

    (folder / f"{names[9]}.delg_global").unlink()
    with pytest.raises(FileNotFoundError) as error:
        descriptor_matrix(str(folder), names)
    assert str(error.value) == f"{folder / names[9]}.delg_global: no such global descriptor file"


@pytest.mark.parametrize(
    "damage, message",
    [
        (b"\xff\xfe not a protobuf", "Error parsing message"),
        (datum_io.serialize_to_string(np.ones(DIM + 1, np.float32)), "of 17 values"),
        (datum_io.serialize_to_string(np.full(DIM, np.nan, np.float32)), "NaN or infinite"),
    ],
    ids=["not-a-datum", "another-size", "nan"],
)
def test_a_damaged_file_is_one_line_naming_it_and_leaves_no_cache(features, damage, message):
    folder, names, _ = features
    descriptor_matrix(str(folder), names)  # a current cache that must not survive
    bad = folder / f"{names[123]}.delg_global"
    bad.write_bytes(damage)

    with pytest.raises(ValueError) as error:
        descriptor_matrix(str(folder), names, chunk_rows=50)

    text = str(error.value)
    assert "\n" not in text and text.startswith(str(bad)) and message in text, text
    assert cache_files(folder) == []


def test_hostile_names_are_refused_before_anything_is_read(features, reads):
    folder, names, _ = features
    with pytest.raises(ValueError, match=r"'\.\./escape'.*'\.\.' part"):
        descriptor_matrix(str(folder), [*names[:3], "../escape"])
    assert reads == [] and cache_files(folder) == []


def test_remote_features_are_cached_in_a_local_folder(tmp_path, reads):
    values = np.arange(4 * DIM, dtype=np.float32).reshape(4, DIM)
    names = ["a/b/c/abc0", "a/b/c/abc1", "d/e/f/def2", "d/e/f/def3"]
    for name, row in zip(names, values, strict=True):
        datum_io.write_to_file(row, f"memory://features/index/{name}.delg_global")
    try:
        cache = tmp_path / "cache"
        matrix = descriptor_matrix("memory://features/index", names, str(cache))
        assert Path(matrix.path).parent == cache
        np.testing.assert_array_equal(matrix[1:4], values[1:4])
        reads.clear()
        descriptor_matrix("memory://features/index", names, str(cache))
        assert reads == []
        with pytest.raises(ValueError, match="must be a local folder"):
            descriptor_matrix("memory://features/index", names, "memory://cache")
    finally:
        fsspec.filesystem("memory").rm("/features", recursive=True)
