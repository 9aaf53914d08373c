"""The pure parts of build_image_dataset: labels, relabeling, split, order, schema, image checks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from delf_core import records
from delf_core.build_image_dataset import BuildConfig, build_fingerprint, plan_build
from delf_core.gldv2 import images, labels
from delf_core.gldv2.split import order_key, split_class, validation_cutoff


def test_clean_csv_keeps_first_position_and_last_label(tmp_path):
    path = tmp_path / "train_clean.csv"
    path.write_text("landmark_id,images\n7,a b\n3,c a\n9,\n")
    assert list(labels.read_clean_labels(str(path)).items()) == [("a", 3), ("b", 7), ("c", 3)]


def test_clean_csv_with_a_bad_label_names_the_row(tmp_path):
    path = tmp_path / "train_clean.csv"
    path.write_text("landmark_id,images\n7,a b\nseven,c\n")
    with pytest.raises(ValueError, match=r"train_clean.csv: row 3, column landmark_id: 'seven'"):
        labels.read_clean_labels(str(path))


def test_csv_without_the_columns_is_refused(tmp_path):
    path = tmp_path / "train_clean.csv"
    path.write_text("id,landmark\n")
    with pytest.raises(ValueError, match="no column landmark_id, images"):
        labels.read_clean_labels(str(path))


def test_train_csv_labels(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text("id,url,landmark_id\n00aa,http://x/1.jpg,5\n00ab,http://x/2.jpg,12\n")
    assert labels.read_train_labels(str(path)) == {"00aa": 5, "00ab": 12}
    path.write_text("id,url,landmark_id\n00aa,http://x/1.jpg,\n")
    with pytest.raises(ValueError, match="row 2, column landmark_id: ''"):
        labels.read_train_labels(str(path))


def test_relabeling_is_ascending_old_ids():
    mapping = labels.relabeling({"a": 30, "b": 2, "c": 30, "d": 17})
    assert mapping == {2: 0, 17: 1, 30: 2}
    assert labels.relabeling_csv(mapping) == "new_label,old_label\n0,2\n1,17\n2,30\n"


@pytest.mark.parametrize("n, expected", [(1, 1), (4, 1), (5, 1), (10, 2), (99, 19)])
def test_validation_cutoff_is_the_originals(n, expected):
    assert validation_cutoff(n, 0.2) == expected


def test_class_split_depends_only_on_seed_class_and_ids():
    ids = [f"{i:016x}" for i in range(20)]
    train, validation = split_class(ids, 42, seed=0, validation_split_size=0.2)
    assert len(validation) == 4 and sorted(train + validation) == sorted(ids)
    assert split_class(list(reversed(ids)), 42, 0, 0.2) == (train, validation)
    others = [split_class(ids, 42, seed, 0.2)[1] for seed in range(1, 6)]
    assert any(v != validation for v in others)
    assert split_class(ids, 43, 0, 0.2)[1] != validation
    assert split_class(ids[:1], 42, 0, 0.2) == ([], ids[:1])


def test_order_key_is_stable_and_seeded():
    assert order_key(0, "abc") == order_key(0, "abc")
    assert order_key(0, "abc") != order_key(1, "abc")


@pytest.mark.parametrize("count, shards", [(10, 3), (0, 4), (3, 8), (1580470, 128)])
def test_shard_boundaries_match_truncated_linspace(count, shards):
    expected = np.linspace(0, count, shards + 1).astype(int).tolist()
    assert records.shard_boundaries(count, shards) == expected


def test_shard_names():
    assert records.shard_name("validation", 42, 128) == "validation-00042-of-00128"


def test_example_written_by_make_example_reads_with_the_original_spec():
    jpeg = _encode("RGB", "JPEG")
    with_label = records.parse_example(records.make_example("0123456789abcdef", jpeg, 48, 64, 7))
    assert with_label[records.ID].numpy() == b"0123456789abcdef"
    assert with_label[records.ENCODED].numpy() == jpeg
    assert int(with_label[records.LABEL]) == 7
    assert (int(with_label[records.HEIGHT]), int(with_label[records.WIDTH])) == (48, 64)
    assert int(with_label[records.CHANNELS]) == 3
    serialized = records.make_example("0123456789abcdef", jpeg, 48, 64)
    assert records.LABEL not in tf.train.Example.FromString(serialized).features.feature
    assert int(records.parse_example(serialized)[records.LABEL]) == 0  # the reader's default


def _encode(mode: str, fmt: str) -> bytes:
    pixels = (np.random.default_rng(1).random((48, 64, 3)) * 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).convert(mode).save(out, fmt)
    return out.getvalue()


def test_plain_jpegs_pass_unchanged():
    for mode in ("RGB", "L"):
        data = _encode(mode, "JPEG")
        checked = images.check_image(data)
        assert checked.encoded == data and not checked.reencoded
        assert (checked.height, checked.width) == (48, 64)


@pytest.mark.parametrize("mode, fmt", [("CMYK", "JPEG"), ("RGB", "PNG"), ("P", "GIF")])
def test_odd_images_are_reencoded_to_rgb_jpeg(mode, fmt):
    checked = images.check_image(_encode(mode, fmt))
    assert checked.reencoded and checked.encoded[:3] == b"\xff\xd8\xff"
    assert Image.open(io.BytesIO(checked.encoded)).mode == "RGB"
    assert (checked.height, checked.width) == (48, 64)


@pytest.mark.parametrize("data", [_encode("RGB", "JPEG")[:300], b"not an image", b""])
def test_broken_bytes_are_refused(data):
    with pytest.raises(images.BadImageError):
        images.check_image(data)


@pytest.mark.parametrize(
    "overrides, flag",
    [
        ({"num_shards": 0}, "--num_shards"),
        (
            {"generate_train_validation_splits": True, "validation_split_size": 1.0},
            "--validation_split_size",
        ),
        (
            {"generate_train_validation_splits": True, "validation_split_size": 0.0},
            "--validation_split_size",
        ),
        ({"test_csv_path": "x.csv"}, "--test_directory"),
    ],
)
def test_bad_flags_name_themselves(overrides, flag):
    with pytest.raises(ValueError, match=flag):
        BuildConfig(**overrides).validate()


def test_without_a_clean_csv_labels_stay_and_unlisted_images_are_reported(tmp_path):
    folder = tmp_path / "train" / "0" / "0" / "0"
    folder.mkdir(parents=True)
    for image_id in ("000a", "000b", "000c"):
        (folder / f"{image_id}.jpg").write_bytes(_encode("RGB", "JPEG"))
    csv_path = tmp_path / "train.csv"
    csv_path.write_text("id,url,landmark_id\n000a,u,500\n000b,u,9\n000z,u,9\n")

    plan = plan_build(
        BuildConfig(
            train_directory=str(tmp_path / "train" / "*" / "*" / "*"),
            train_csv_path=str(csv_path),
            output_directory=str(tmp_path / "out"),
            num_shards=2,
        )
    )

    planned = {i.image_id: i.label for s in plan.shards for i in s.images}
    assert planned == {"000a": 500, "000b": 9}
    assert [(p.image_id, p.problem) for p in plan.problems] == [("000c", "unlisted")]
    assert plan.relabeling is None and plan.num_classes() == 2
    assert [s.name for s in plan.shards] == ["train-00000-of-00002", "train-00001-of-00002"]


def _listing_fingerprint(config: BuildConfig, csv: str, train: dict, test: dict) -> str:
    """The fingerprint as the build has always defined it: params, CSV, ids and sizes."""
    import hashlib
    import json

    digest = hashlib.sha256(json.dumps(config.params(), sort_keys=True).encode())
    digest.update(Path(csv).read_bytes())
    for files in (train, test):
        digest.update("".join(f"{i}:{files[i]};" for i in sorted(files)).encode())
        digest.update(b"|")
    return digest.hexdigest()


@pytest.mark.parametrize("layout", ["gldv2", "other"])
def test_the_fingerprint_is_the_listings_and_stays_what_it_was(tmp_path, layout):
    ids = ["00a1", "0b22", "0b23", "f0f0"]
    csv = tmp_path / "train_clean.csv"
    csv.write_text("landmark_id,images\n3,00a1 0b22\n5,0b23 f0f0\n")
    sizes = {}
    for n, image_id in enumerate(ids):
        # GLDv2's a/b/c/<id> folders list ids in order; other layouts (and an id found
        # twice, the first path kept) are hashed in id order all the same.
        folder = f"{image_id[0]}/{image_id[1]}/{image_id[2]}" if layout == "gldv2" else f"{n % 2}"
        (tmp_path / "train" / folder).mkdir(parents=True, exist_ok=True)
        (tmp_path / "train" / folder / f"{image_id}.jpg").write_bytes(b"x" * (n + 1))
        sizes[image_id] = n + 1
    if layout == "other":
        (tmp_path / "train" / "1" / "00a1.jpg").write_bytes(b"yy")  # after 0/00a1.jpg
    pattern = "*/*/*" if layout == "gldv2" else "*"
    config = BuildConfig(
        train_directory=str(tmp_path / "train" / pattern),
        output_directory=str(tmp_path / "out"),
        train_csv_path=str(tmp_path / "unused.csv"),
        train_clean_csv_path=str(csv),
        generate_train_validation_splits=True,
    )
    plan = plan_build(config)
    assert plan.fingerprint == _listing_fingerprint(config, str(csv), sizes, {})
    assert build_fingerprint(config) == plan.fingerprint
    assert plan.counts() == {"train": 2, "validation": 2}
    (tmp_path / "train" / "1" if layout == "other" else tmp_path / "train/f/0/f").joinpath(
        "f0f0.jpg"
    ).write_bytes(b"longer")
    assert build_fingerprint(config) != plan.fingerprint
