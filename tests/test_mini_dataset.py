"""Tests of the mini GLDv2 dataset: layout, contents, ground truth, determinism, CLI, geometry."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import json
import pathlib
import shutil
import subprocess
import sys
import tarfile
import uuid

import fsspec
import numpy as np
import pytest
from PIL import Image

from delf_cli.main import main
from delf_core.gldv2 import layout, views
from delf_core.gldv2.mini import MANIFEST_NAME, MiniDatasetConfig, make_mini_dataset

SMALL = MiniDatasetConfig(
    num_landmarks=3,
    views_per_landmark=3,
    num_noisy_images=2,
    num_index_landmarks=2,
    index_views_per_landmark=2,
    num_retrieval_queries=3,
    num_recognition_queries=2,
    num_distractors=2,
    num_train_tars=2,
    num_index_tars=1,
    num_test_tars=2,
    min_image_size=64,
    max_image_size=96,
)
# The CLI tests use an even smaller dataset, given as flags.
TINY = MiniDatasetConfig(
    num_landmarks=2,
    views_per_landmark=2,
    num_noisy_images=1,
    num_index_landmarks=1,
    index_views_per_landmark=2,
    num_retrieval_queries=1,
    num_recognition_queries=1,
    num_distractors=1,
    num_train_tars=1,
    min_image_size=48,
    max_image_size=64,
)
TINY_FLAGS = [
    f"--{field.name}={getattr(TINY, field.name)}"
    for field in dataclasses.fields(TINY)
    if getattr(TINY, field.name) != field.default
]
SPLITS = (layout.TRAIN, layout.INDEX, layout.TEST)


def expected_files(config: MiniDatasetConfig) -> set[str]:
    files = {MANIFEST_NAME}
    for split in SPLITS:
        files |= {f.bucket_path for f in layout.METADATA_FILES[split]}
        for t in range(config.num_tars()[split]):
            files |= {layout.tar_bucket_path(split, t), layout.md5_bucket_path(split, t)}
    return files


def all_files(root: pathlib.Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def read_csv(root: pathlib.Path, bucket_path: str) -> list[dict[str, str]]:
    text = (root / bucket_path).read_text()
    assert "\r" not in text
    return list(csv.DictReader(io.StringIO(text)))


def tar_members(root: pathlib.Path, split: str, t: int) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    with tarfile.open(root / layout.tar_bucket_path(split, t)) as tar:
        return {m.name: (m, tar.extractfile(m).read()) for m in tar.getmembers()}


def split_images(root: pathlib.Path, config: MiniDatasetConfig, split: str) -> dict[str, bytes]:
    out = {}
    for t in range(config.num_tars()[split]):
        for name, (_, data) in tar_members(root, split, t).items():
            out[name.rsplit("/", 1)[1].removesuffix(".jpg")] = data
    return out


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("mini")
    summary = make_mini_dataset(SMALL, str(root))
    assert not summary.skipped
    assert summary.images == SMALL.num_images()
    return root


def test_layout_has_exactly_the_bucket_files(dataset: pathlib.Path) -> None:
    assert set(all_files(dataset)) == expected_files(SMALL)


def test_md5_files_match_tars(dataset: pathlib.Path) -> None:
    for split in SPLITS:
        for t in range(SMALL.num_tars()[split]):
            text = (dataset / layout.md5_bucket_path(split, t)).read_text()
            digest = layout.parse_md5_file(text, "md5")
            assert text == layout.md5_line(digest, layout.tar_name(t))
            tar = (dataset / layout.tar_bucket_path(split, t)).read_bytes()
            assert hashlib.md5(tar).hexdigest() == digest


def test_tars_hold_sorted_jpegs_at_their_id_path(dataset: pathlib.Path) -> None:
    for split in SPLITS:
        num_tars = SMALL.num_tars()[split]
        per_tar = []
        for t in range(num_tars):
            members = tar_members(dataset, split, t)
            assert members, f"{split} tar {t} is empty"
            assert list(members) == sorted(members)
            per_tar.append(len(members))
            for name, (info, data) in members.items():
                image_id = name.rsplit("/", 1)[1].removesuffix(".jpg")
                assert name == layout.image_relpath(image_id)
                assert len(image_id) == layout.IMAGE_ID_LENGTH
                assert set(image_id) <= set("0123456789abcdef")
                assert info.isreg() and info.mtime == 0 and info.uid == 0 and info.gid == 0
                image = Image.open(io.BytesIO(data))
                assert image.format == "JPEG" and image.mode == "RGB"
                assert SMALL.min_image_size <= max(image.size) <= SMALL.max_image_size
                assert np.asarray(image).std() > 5, f"{name} is nearly flat"
        assert max(per_tar) - min(per_tar) <= 1  # round-robin
        csv_name = {layout.TRAIN: "train.csv", layout.INDEX: "index.csv", layout.TEST: "test.csv"}
        rows = read_csv(dataset, f"metadata/{csv_name[split]}")
        assert sorted(r["id"] for r in rows) == sorted(split_images(dataset, SMALL, split))


def test_ids_unique_across_splits(dataset: pathlib.Path) -> None:
    ids = [i for split in SPLITS for i in split_images(dataset, SMALL, split)]
    assert len(ids) == len(set(ids)) == sum(SMALL.num_images().values())
    digests = [
        hashlib.md5(data).hexdigest()
        for split in SPLITS
        for data in split_images(dataset, SMALL, split).values()
    ]
    assert len(set(digests)) == len(digests)


def test_train_clean_is_a_strict_subset_with_agreeing_labels(dataset: pathlib.Path) -> None:
    train = {r["id"]: int(r["landmark_id"]) for r in read_csv(dataset, "metadata/train.csv")}
    clean = read_csv(dataset, "metadata/train_clean.csv")
    clean_ids = set()
    for row in clean:
        images = row["images"].split()
        assert len(images) >= 2
        for image_id in images:
            assert train[image_id] == int(row["landmark_id"])
        clean_ids |= set(images)
    assert clean_ids < set(train)
    assert len(set(train) - clean_ids) == SMALL.num_noisy_images
    assert len(clean) == SMALL.num_landmarks
    categories = read_csv(dataset, "metadata/train_label_to_category.csv")
    assert {r["landmark_id"] for r in categories} == {r["landmark_id"] for r in clean}
    attribution = read_csv(dataset, "metadata/train_attribution.csv")
    assert [r["id"] for r in attribution] == list(train)
    assert all(r["author"] and r["license"] and r["title"] for r in attribution)
    for row in read_csv(dataset, "metadata/train.csv"):
        assert 0 <= int(row["landmark_id"]) < 203094
        assert row["url"].endswith(f"/{row['id']}.jpg")


def test_ground_truth_refers_to_existing_ids(dataset: pathlib.Path) -> None:
    test_ids = [r["id"] for r in read_csv(dataset, "metadata/test.csv")]
    index_to_landmark = {
        r["id"]: r["landmark_id"] for r in read_csv(dataset, "metadata/index_image_to_landmark.csv")
    }
    assert sorted(index_to_landmark) == sorted(
        r["id"] for r in read_csv(dataset, "metadata/index.csv")
    )
    index_landmarks = {
        r["landmark_id"] for r in read_csv(dataset, "metadata/index_label_to_category.csv")
    }
    assert set(index_to_landmark.values()) == index_landmarks
    train_landmarks = {r["landmark_id"] for r in read_csv(dataset, "metadata/train_clean.csv")}
    assert not index_landmarks & train_landmarks

    recognition = read_csv(dataset, "ground_truth/recognition_solution_v2.1.csv")
    retrieval = read_csv(dataset, "ground_truth/retrieval_solution_v2.1.csv")
    assert [r["id"] for r in recognition] == [r["id"] for r in retrieval] == test_ids
    for row in recognition:
        assert row["Usage"] == ("Ignored" if not row["landmarks"] else row["Usage"])
        assert row["Usage"] in {"Public", "Private", "Ignored"}
        assert set(row["landmarks"].split()) <= train_landmarks
    for row in retrieval:
        assert row["Usage"] in ({"Public", "Private"} if row["images"] else {"Ignored"})
        images = row["images"].split()
        if images:
            (landmark,) = {index_to_landmark[i] for i in images}
            # Every index image of the landmark, and nothing else.
            assert sorted(images) == sorted(
                i for i, lm in index_to_landmark.items() if lm == landmark
            )
    scored_recognition = {r["id"] for r in recognition if r["landmarks"]}
    scored_retrieval = {r["id"] for r in retrieval if r["images"]}
    assert len(scored_recognition) == SMALL.num_recognition_queries
    assert len(scored_retrieval) == SMALL.num_retrieval_queries
    assert not scored_recognition & scored_retrieval
    distractors = set(test_ids) - scored_recognition - scored_retrieval
    assert len(distractors) == SMALL.num_distractors
    usages = {r["Usage"] for r in retrieval if r["images"]}
    assert usages == {"Public", "Private"}


def test_queries_are_new_views_not_copies(dataset: pathlib.Path) -> None:
    index = split_images(dataset, SMALL, layout.INDEX)
    test = split_images(dataset, SMALL, layout.TEST)
    for row in read_csv(dataset, "ground_truth/retrieval_solution_v2.1.csv"):
        query = np.asarray(Image.open(io.BytesIO(test[row["id"]])))
        for image_id in row["images"].split():
            other = np.asarray(Image.open(io.BytesIO(index[image_id])))
            assert query.shape != other.shape or not np.array_equal(query, other)


def test_manifest_records_parameters_counts_and_sources(dataset: pathlib.Path) -> None:
    manifest = json.loads((dataset / MANIFEST_NAME).read_text())
    assert MiniDatasetConfig(**manifest["config"]) == SMALL
    assert manifest["seed"] == SMALL.seed
    for split in SPLITS:
        assert manifest["counts"][split]["images"] == SMALL.num_images()[split]
        assert manifest["tars"][split] == [
            layout.tar_name(t) for t in range(SMALL.num_tars()[split])
        ]
    assert set(manifest["files"]) == expected_files(SMALL) - {MANIFEST_NAME}
    for relpath, info in manifest["files"].items():
        assert hashlib.md5((dataset / relpath).read_bytes()).hexdigest() == info["md5"]
    assert manifest["sources"]
    for source in manifest["sources"]:
        assert source["author"] and source["license"] and source["url"] and source["images"] >= 1


def test_same_seed_gives_identical_bytes(dataset: pathlib.Path, tmp_path: pathlib.Path) -> None:
    make_mini_dataset(SMALL, str(tmp_path))
    assert all_files(tmp_path) == all_files(dataset)


def test_other_seed_gives_other_data(dataset: pathlib.Path, tmp_path: pathlib.Path) -> None:
    make_mini_dataset(dataclasses.replace(SMALL, seed=1), str(tmp_path))
    ours, theirs = all_files(dataset), all_files(tmp_path)
    assert set(ours) == set(theirs)
    for relpath in (
        layout.tar_bucket_path(layout.TRAIN, 0),
        "metadata/train.csv",
        "metadata/test.csv",
    ):
        assert ours[relpath] != theirs[relpath]


def test_writes_to_memory_url(dataset: pathlib.Path) -> None:
    url = f"memory://mini-{uuid.uuid4().hex}"
    fs = fsspec.filesystem("memory")
    try:
        summary = make_mini_dataset(SMALL, url)
        assert summary.images == SMALL.num_images()
        local = all_files(dataset)
        root = url.removeprefix("memory://")
        for relpath in expected_files(SMALL):
            assert fs.cat_file(f"/{root}/{relpath}") == local[relpath]
    finally:
        fs.rm(url, recursive=True)


def test_rerun_skips_and_missing_file_is_rewritten(
    dataset: pathlib.Path, tmp_path: pathlib.Path
) -> None:
    copy = tmp_path / "copy"
    shutil.copytree(dataset, copy)
    assert make_mini_dataset(SMALL, str(copy)).skipped
    tar = copy / layout.tar_bucket_path(layout.TEST, 1)
    tar.unlink()
    assert not make_mini_dataset(SMALL, str(copy)).skipped
    assert all_files(copy) == all_files(dataset)


def test_cli_end_to_end(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert main(["make_mini_dataset", f"--output_dir={out}", "--seed", "3", *TINY_FLAGS]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    num_images = sum(TINY.num_images().values())
    assert lines[0].startswith(f"make_mini_dataset: wrote {num_images} images")
    assert "MB" in lines[0] and str(out) in lines[0]
    assert set(all_files(out)) == expected_files(TINY)
    assert json.loads((out / MANIFEST_NAME).read_text())["seed"] == 3


@pytest.mark.parametrize(
    "flag, flag_name",
    [
        ("--num_train_tars=100", "--num_train_tars"),
        ("--num_test_tars=4", "--num_test_tars"),
        ("--max_image_size=40", "--max_image_size"),
        ("--num_landmarks=0", "--num_landmarks"),
        ("--views_per_landmark=1", "--views_per_landmark"),
        ("--num_noisy_images=0", "--num_noisy_images"),
        ("--max_jpeg_quality=101", "--max_jpeg_quality"),
        ("--max_corner_shift=0.5", "--max_corner_shift"),
    ],
)
def test_cli_bad_flag_fails_cleanly(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], flag: str, flag_name: str
) -> None:
    out = tmp_path / "out"
    assert main(["make_mini_dataset", f"--output_dir={out}", *TINY_FLAGS, flag]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("delf make_mini_dataset: error: ")
    assert flag_name in lines[0]
    assert captured.out == ""
    assert not out.exists()


def test_default_config_is_valid_and_small() -> None:
    config = MiniDatasetConfig()
    config.validate()
    assert config.num_images() == {layout.TRAIN: 64, layout.INDEX: 24, layout.TEST: 16}


def test_fit_homography_maps_the_four_points() -> None:
    truth = np.array([[0.9, 0.1, 12.0], [-0.2, 1.1, -5.0], [1e-3, -2e-3, 1.0]])
    src = np.array([[0, 0], [100, 0], [100, 80], [0, 80]], dtype=float)
    dst = views.apply_homography(truth, src)
    fitted = views.fit_homography(src, dst)
    np.testing.assert_allclose(views.apply_homography(fitted, src), dst, atol=1e-6)
    np.testing.assert_allclose(fitted, truth, rtol=1e-6, atol=1e-9)
    inside = np.array([[37.0, 21.0], [80.0, 66.0]])
    np.testing.assert_allclose(
        views.apply_homography(fitted, inside), views.apply_homography(truth, inside), atol=1e-6
    )
    with pytest.raises(ValueError, match="degenerate"):
        views.fit_homography(np.array([[0, 0], [1, 1], [2, 2], [0, 5]]), dst)


def test_warp_moves_a_point_where_the_homography_says() -> None:
    pixels = np.zeros((200, 240, 3), dtype=np.uint8)
    pixels[98:103, 148:153] = 255  # a bright dot centred on (150.5, 100.5)
    quad = np.array([[40.0, 30.0], [210.0, 50.0], [200.0, 180.0], [30.0, 170.0]])
    size = (120, 100)
    warped = np.asarray(views.warp_quad(Image.fromarray(pixels), quad, size)).sum(axis=2)
    out_corners = np.array([[0, 0], [size[0], 0], [size[0], size[1]], [0, size[1]]], dtype=float)
    (expected,) = views.apply_homography(views.fit_homography(quad, out_corners), [[150.5, 100.5]])
    ys, xs = np.nonzero(warped > warped.max() / 2)
    # Pixel (x, y) covers [x, x + 1), so its centre is at x + 0.5.
    np.testing.assert_allclose([xs.mean() + 0.5, ys.mean() + 0.5], expected, atol=1.0)


def test_view_quads_stay_inside_the_photo() -> None:
    config = views.ViewConfig()
    region = (0.0, 0.0, 200.0, 150.0)  # touching two borders of a 300 x 200 photo
    for seed in range(50):
        quad = views.view_quad(region, 300, 200, np.random.default_rng(seed), config)
        assert quad.min() >= -1e-9
        assert (quad[:, 0] <= 300 + 1e-9).all() and (quad[:, 1] <= 200 + 1e-9).all()


def test_make_view_is_seeded() -> None:
    photo = views.load_photo(views.LANDMARK_PHOTOS[0])
    region = (100.0, 80.0, 400.0, 300.0)
    config = views.ViewConfig(min_size=64, max_size=96)
    one = views.make_view(photo, region, np.random.default_rng(7), config)
    assert one == views.make_view(photo, region, np.random.default_rng(7), config)
    assert one != views.make_view(photo, region, np.random.default_rng(8), config)
    assert 64 <= max(Image.open(io.BytesIO(one)).size) <= 96


def test_core_imports_no_orchestrator() -> None:
    code = (
        "import sys, delf_core.gldv2.mini\n"
        "bad = [m for m in ('prefect', 'apache_beam', 'flows', 'delf_cli') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
