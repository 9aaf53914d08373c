"""build_image_dataset on the mini dataset with Beam's local runner."""

from __future__ import annotations

import collections
import csv
import io
import shutil

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from beam_jobs.build_image_dataset import run_build
from delf_core import records
from delf_core.build_image_dataset import MANIFEST_NAME, REPORT_NAME, BuildConfig
from delf_core.build_image_dataset.write import StrictModeError
from delf_core.gldv2 import layout
from flows.build_image_dataset import build_image_dataset
from tests.test_flows_summary import latest_artifact

pytestmark = pytest.mark.integration
NUM_SHARDS = 4


def config_for(dataset, out, **overrides) -> BuildConfig:
    values = dict(
        train_directory=f"{dataset}/train/*/*/*/",
        train_csv_path=f"{dataset}/train/train.csv",
        train_clean_csv_path=f"{dataset}/train/train_clean.csv",
        test_directory=f"{dataset}/test/*/*/*/",
        test_csv_path=f"{dataset}/test/test.csv",
        output_directory=str(out),
        num_shards=NUM_SHARDS,
        generate_train_validation_splits=True,
        validation_split_size=0.2,
    )
    values.update(overrides)
    return BuildConfig(**values)


def read_split(out, prefix) -> list[dict]:
    files = sorted(str(p) for p in out.glob(f"{prefix}-*"))
    parsed = []
    for serialized in tf.data.TFRecordDataset(files):
        example = records.parse_example(serialized)
        raw = tf.train.Example.FromString(serialized.numpy())
        parsed.append(
            {
                "id": example[records.ID].numpy().decode(),
                "label": int(example[records.LABEL]),
                "has_label": records.LABEL in raw.features.feature,
                "encoded": example[records.ENCODED].numpy(),
                "height": int(example[records.HEIGHT]),
                "width": int(example[records.WIDTH]),
                "format": example[records.FORMAT].numpy(),
            }
        )
    return parsed


def clean_csv(dataset) -> dict[str, int]:
    labels = {}
    with open(dataset / "train" / "train_clean.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            for image_id in row["images"].split():
                labels[image_id] = int(row["landmark_id"])
    return labels


@pytest.fixture(scope="module")
def built(mini_gldv2, tmp_path_factory):
    out = tmp_path_factory.mktemp("tfrecord")
    manifest = run_build(config_for(mini_gldv2, out))
    return out, manifest


def test_every_record_parses_with_the_original_spec_and_holds_the_file_bytes(built, mini_gldv2):
    out, _ = built
    for prefix, split in [("train", "train"), ("validation", "train"), ("test", "test")]:
        for record in read_split(out, prefix):
            path = mini_gldv2 / split / layout.image_relpath(record["id"])
            assert record["encoded"] == path.read_bytes()
            decoded = tf.io.decode_jpeg(record["encoded"], channels=3)
            assert (record["height"], record["width"]) == tuple(decoded.shape[:2])
            assert record["format"] == b"JPEG"


def test_counts_relabeling_and_split_follow_the_clean_csv(built, mini_gldv2):
    out, manifest = built
    clean = clean_csv(mini_gldv2)
    train, validation = read_split(out, "train"), read_split(out, "validation")
    assert sorted(r["id"] for r in train + validation) == sorted(clean)

    expected = {old: new for new, old in enumerate(sorted(set(clean.values())))}
    relabeling = (out / "relabeling.csv").read_text().splitlines()
    assert relabeling[0] == "new_label,old_label"
    assert relabeling[1:] == [f"{new},{old}" for old, new in sorted(expected.items())]
    for record in train + validation:
        assert record["label"] == expected[clean[record["id"]]]

    per_class = collections.Counter(clean.values())
    validation_per_class = collections.Counter(r["label"] for r in validation)
    for old, count in per_class.items():
        assert validation_per_class[expected[old]] == max(1, int(0.2 * count))
    assert manifest["num_classes"] == len(expected)
    assert manifest["splits"]["train"]["records"] == len(train)
    assert manifest["splits"]["validation"]["records"] == len(validation)


def test_test_split_has_every_test_image_and_no_label(built, mini_gldv2):
    out, manifest = built
    test = read_split(out, "test")
    test_ids = (mini_gldv2 / "test" / "test.csv").read_text().split()[1:]
    assert sorted(r["id"] for r in test) == sorted(test_ids)
    assert not any(r["has_label"] for r in test)
    assert manifest["splits"]["test"]["records"] == len(test_ids)


def test_num_shards_is_honoured_and_shards_are_whole(built):
    out, manifest = built
    for prefix in ("train", "validation", "test"):
        names = sorted(p.name for p in out.glob(f"{prefix}-*"))
        assert names == [f"{prefix}-{i:05d}-of-{NUM_SHARDS:05d}" for i in range(NUM_SHARDS)]
        assert sum(manifest["splits"][prefix]["shards"].values()) == len(read_split(out, prefix))
    assert not list(out.glob(".*tmp"))
    assert not (out / ".build_image_dataset").exists() or not any(
        (out / ".build_image_dataset").iterdir()
    )


def test_records_are_mixed_across_classes_within_shards(built):
    out, _ = built
    for path in sorted(out.glob("train-*")):
        labels = [
            int(records.parse_example(s)[records.LABEL]) for s in tf.data.TFRecordDataset(str(path))
        ]
        assert len(set(labels)) >= 3
        assert collections.Counter(labels).most_common(1)[0][1] <= len(labels) / 2


def test_rerun_with_the_same_inputs_skips(built, mini_gldv2):
    out, manifest = built
    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = run_build(config_for(mini_gldv2, out))
    assert again == manifest
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == before


def train_validation_ids(out):
    return {r["id"] for r in read_split(out, "validation")}


def test_split_is_the_same_on_two_workers_and_changes_with_the_seed(built, mini_gldv2, tmp_path):
    out, _ = built
    two_workers = tmp_path / "two"
    run_build(
        config_for(mini_gldv2, two_workers),
        ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
    )
    for path in sorted(out.glob("*-of-*")):
        assert (two_workers / path.name).read_bytes() == path.read_bytes(), path.name

    other_seed = tmp_path / "seed1"
    run_build(config_for(mini_gldv2, other_seed, seed=1, test_csv_path=None))
    assert train_validation_ids(other_seed) != train_validation_ids(out)


def _jpeg(mode: str) -> bytes:
    pixels = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, "JPEG")
    return out.getvalue()


@pytest.fixture()
def damaged(mini_gldv2, tmp_path):
    """A copy of the mini dataset with a missing, a truncated, a PNG and a CMYK image."""
    dataset = tmp_path / "gldv2_dataset"
    shutil.copytree(mini_gldv2, dataset)
    ids = sorted(clean_csv(dataset))
    paths = {i: dataset / "train" / layout.image_relpath(i) for i in ids[:4]}
    paths[ids[0]].unlink()
    paths[ids[1]].write_bytes(paths[ids[1]].read_bytes()[:600])
    png = io.BytesIO()
    Image.open(paths[ids[2]]).save(png, "PNG")
    paths[ids[2]].write_bytes(png.getvalue())
    paths[ids[3]].write_bytes(_jpeg("CMYK"))
    return dataset, ids[:4]


def test_bad_images_are_reported_and_left_out_or_reencoded(prefect_harness, damaged, tmp_path):
    dataset, (missing, truncated, png, cmyk) = damaged
    out = tmp_path / "out"

    manifest = run_build(config_for(dataset, out, test_csv_path=None))

    assert manifest["problems"] == {"missing": 1, "reencoded": 2, "unreadable": 1}
    with open(out / REPORT_NAME, newline="") as handle:
        report = {row["image_id"]: row["problem"] for row in csv.DictReader(handle)}
    assert report == {
        missing: "missing",
        truncated: "unreadable",
        png: "reencoded",
        cmyk: "reencoded",
    }
    written = {r["id"]: r for r in read_split(out, "train") + read_split(out, "validation")}
    assert missing not in written and truncated not in written
    for image_id in (png, cmyk):
        assert written[image_id]["encoded"][:3] == b"\xff\xd8\xff"
        with Image.open(io.BytesIO(written[image_id]["encoded"])) as image:
            assert image.mode == "RGB"
    assert len(written) == len(clean_csv(dataset)) - 2

    # Through the flow (the job finds its build and skips), the UI's summary names them.
    build_image_dataset(config_for(dataset, out, test_csv_path=None))
    summary = latest_artifact("gldv2-build-image-dataset").data
    records = manifest["splits"]["train"]["records"]
    assert f"| train records | {records} in {NUM_SHARDS} shards |" in summary
    assert "| problem: missing | 1 |" in summary and "| size on disk | " in summary
    assert f"| problem report | `{out / REPORT_NAME}` |" in summary
    assert f"- missing: `{missing}` (train)" in summary
    assert f"- unreadable: `{truncated}` (train)" in summary


def test_strict_fails_naming_the_missing_image(damaged, tmp_path):
    dataset, (missing, *_) = damaged
    with pytest.raises(StrictModeError, match=missing):
        run_build(config_for(dataset, tmp_path / "out", strict=True))
    assert not list((tmp_path / "out").glob("train-*"))


def test_strict_fails_naming_the_unreadable_file(damaged, tmp_path):
    dataset, (missing, truncated, png, cmyk) = damaged
    # Only the truncated image is left to find, inside the job (re-encoding is a
    # problem too under --strict, and shards run in parallel).
    for image_id in (missing, png, cmyk):
        (dataset / "train" / layout.image_relpath(image_id)).write_bytes(_jpeg("RGB"))
    with pytest.raises(StrictModeError, match=truncated):
        run_build(config_for(dataset, tmp_path / "out", strict=True, test_csv_path=None))
    assert not (tmp_path / "out" / MANIFEST_NAME).exists()


def test_gs_input_and_output_through_the_emulator(gcs_emulator, mini_gldv2, tmp_path):
    import fsspec

    fs = fsspec.filesystem("gs")
    dataset = f"{gcs_emulator}/build_input/gldv2_dataset"
    for path in (mini_gldv2 / "train").rglob("*"):
        if path.is_file() and path.suffix in (".jpg", ".csv"):
            fs.put_file(str(path), f"{dataset}/train/{path.relative_to(mini_gldv2 / 'train')}")
    out = f"{gcs_emulator}/build_output/tfrecord"

    manifest = run_build(config_for(dataset, out, test_csv_path=None, num_shards=2))

    assert (
        manifest["splits"]["train"]["records"] + manifest["splits"]["validation"]["records"] == 60
    )
    local = tmp_path / "copied"
    local.mkdir()
    for name in ("train-00000-of-00002", "train-00001-of-00002", "relabeling.csv"):
        fs.get_file(f"{out}/{name}", str(local / name))
    assert len(read_split(local, "train")) == manifest["splits"]["train"]["records"]
    assert fs.exists(f"{out}/{MANIFEST_NAME}") and fs.exists(f"{out}/{REPORT_NAME}")


def test_bad_images_are_counted_as_beam_metrics(damaged, tmp_path):
    import apache_beam as beam

    from beam_jobs.build_image_dataset import build_pipeline, job_counters
    from beam_jobs.options import pipeline_options
    from delf_core.build_image_dataset import plan_build, write_context

    dataset, _ = damaged
    config = config_for(dataset, tmp_path / "out", test_csv_path=None)
    plan = plan_build(config)
    pipeline = beam.Pipeline(options=pipeline_options([]))
    build_pipeline(pipeline, plan.write(), write_context(plan), config)
    result = pipeline.run()
    result.wait_until_finish()

    counters = job_counters(result)
    assert counters["records_written"] == len(clean_csv(dataset)) - 2
    assert counters["unreadable"] == 1 and counters["reencoded"] == 2
