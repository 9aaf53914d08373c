"""bench_scale's generator and planning paths at 1/4096 of GLDv2: the counts, not the speed."""

from __future__ import annotations

import csv
import importlib.util
import re
from pathlib import Path

import pytest

from delf_core import storage
from delf_core.build_image_dataset.plan import list_images

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_scale.py"
FRACTION = 1 / 4096


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_scale", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # puts benchmarks/ on the path for scale_data
    module.scale_data.register()
    return module


@pytest.fixture(scope="module")
def data(bench, tmp_path_factory):
    return bench.scale_data.generate(str(tmp_path_factory.mktemp("scale") / "data"), FRACTION)


def _rows(path: str) -> list[dict]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_the_metadata_has_gldv2s_layout_and_counts_scaled(data):
    counts = data.counts
    assert counts["train"] == round(4_132_914 * FRACTION) and counts["index"] == 186
    train = _rows(data.path("train.csv"))
    assert list(train[0]) == ["id", "url", "landmark_id"] and len(train) == counts["train"]
    assert len({row["landmark_id"] for row in train}) == counts["landmarks"]
    assert all(re.fullmatch(r"[0-9a-f]{16}", row["id"]) for row in train)
    assert len({row["id"] for row in train}) == len(train)
    clean = _rows(data.path("train_clean.csv"))
    assert list(clean[0]) == ["landmark_id", "images"] and len(clean) == counts["clean_landmarks"]
    clean_ids = [i for row in clean for i in row["images"].split()]
    assert len(clean_ids) == counts["clean_images"]
    label = {row["id"]: row["landmark_id"] for row in train}
    assert all(label[i] == row["landmark_id"] for row in clean for i in row["images"].split())
    # Zipf-like: the largest landmark has many more images than the median one.
    per_landmark: dict[str, int] = {}
    for row in train:
        per_landmark[row["landmark_id"]] = per_landmark.get(row["landmark_id"], 0) + 1
    ordered = sorted(per_landmark.values())
    assert ordered[-1] >= 4 * ordered[len(ordered) // 2]


def test_the_listing_stands_for_the_images_in_the_planners(data):
    found = list_images(data.listing_url("images", "train", "*", "*", "*"))
    assert len(found) == data.counts["train"]
    image_id, (path, size) = next(iter(found.items()))
    assert path.endswith(f"/{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}.jpg")
    relpath = path.split("/train/")[1]
    assert size > 0 and storage.exists(data.listing_url("images", "train", relpath))


@pytest.mark.parametrize("path", ["download", "build", "extract", "scoring"])
def test_each_planning_path_runs_on_the_generated_data(bench, data, tmp_path, path):
    result = getattr(bench, f"path_{path}")(data, str(tmp_path / path))
    expected = {
        "download": 500 // 4096 + 1 + 100 // 4096 + 1 + 20 // 4096 + 1,  # at least one tar each
        "build": data.counts["clean_images"],
        "extract": data.counts["index"],
        "scoring": data.counts["test"],
    }
    assert result["items"] == expected[path]
    assert result["largest_file"] < bench.TARGET_FILE_MB * 2**20
    assert result["bound"]() > 0
