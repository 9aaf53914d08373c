"""build_image_dataset on hostile input: image bombs, bad CSVs, empty splits, stale files."""

from __future__ import annotations

import io
import struct
import subprocess
import sys
import zlib

import numpy as np
import pytest
from PIL import Image

from delf_core.build_image_dataset import BuildConfig, PlannedImage, ShardPlan, plan_build
from delf_core.build_image_dataset.write import StrictModeError, write_shard
from delf_core.gldv2 import images, labels


def jpeg_claiming(width: int, height: int) -> bytes:
    """A valid 8x8 JPEG of a few hundred bytes whose frame header claims width x height."""
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (90, 120, 200)).save(out, "JPEG")
    data = bytearray(out.getvalue())
    at = 2
    while data[at + 1] not in (0xC0, 0xC1, 0xC2):  # walk the markers to the SOF
        at += 2 + struct.unpack(">H", data[at + 2 : at + 4])[0]
    data[at + 5 : at + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims width x height (its checksum made right)."""
    out = io.BytesIO()
    Image.new("L", (8, 8)).save(out, "PNG")
    data = bytearray(out.getvalue())
    ihdr = data[12:29]  # b"IHDR" + 13 bytes of fields
    ihdr[4:12] = struct.pack(">II", width, height)
    data[12:29] = ihdr
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(ihdr)))
    return bytes(data)


def small_jpeg(seed: int = 0) -> bytes:
    pixels = (np.random.default_rng(seed).random((48, 64, 3)) * 255).astype("uint8")
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG")
    return out.getvalue()


# --- 1. decompression bombs ---------------------------------------------------------


# PIL warns before our limit applies to a PNG between its threshold and twice it.
@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
@pytest.mark.parametrize(
    "data",
    [jpeg_claiming(30000, 30000), jpeg_claiming(12000, 12000), png_claiming(10000, 10000)],
    ids=["jpeg-900Mpx", "jpeg-144Mpx", "png-100Mpx"],
)
def test_a_small_file_claiming_a_huge_size_is_too_large_not_decoded(data):
    assert len(data) < 1000
    with pytest.raises(images.ImageTooLargeError, match="pixels"):
        images.check_image(data)


def test_the_pixel_limit_is_the_callers():
    data = small_jpeg()  # 64 x 48 = 3072 pixels
    with pytest.raises(images.ImageTooLargeError, match="--max_image_pixels=3000"):
        images.check_image(data, max_pixels=3000)
    assert images.check_image(data, max_pixels=3072).encoded == data
    with pytest.raises(images.ImageTooLargeError):
        images.check_image(png_claiming(100, 100), max_pixels=9999)


def _shard_of(tmp_path, contents: dict[str, bytes]) -> ShardPlan:
    planned = []
    for image_id, data in contents.items():
        path = tmp_path / f"{image_id}.jpg"
        path.write_bytes(data)
        planned.append(PlannedImage(image_id, str(path), 3))
    return ShardPlan("train", 0, 1, tuple(planned))


def test_write_shard_leaves_a_bomb_out_as_too_large(tmp_path):
    shard = _shard_of(
        tmp_path, {"a": small_jpeg(0), "bomb": jpeg_claiming(30000, 30000), "b": small_jpeg(1)}
    )
    seen = []
    result = write_shard(shard, str(tmp_path / "out"), on_problem=seen.append)
    assert result.records == 2
    assert [(p.image_id, p.problem) for p in result.problems] == [("bomb", "too_large")]
    assert seen == list(result.problems)
    assert (tmp_path / "out" / "train-00000-of-00001").exists()


def test_write_shard_strict_names_the_bomb(tmp_path):
    shard = _shard_of(tmp_path, {"bomb": jpeg_claiming(12000, 12000)})
    with pytest.raises(StrictModeError, match=r"bomb\.jpg: too_large \(12000x12000"):
        write_shard(shard, str(tmp_path / "out"), strict=True)
    assert not (tmp_path / "out" / "train-00000-of-00001").exists()


@pytest.mark.parametrize("value", [0, 2 * 89_478_485 + 1])  # twice PIL's limit is its most
def test_max_image_pixels_out_of_range_names_the_flag(value):
    with pytest.raises(ValueError, match=f"--max_image_pixels={value}"):
        BuildConfig(max_image_pixels=value).validate()


# --- 3. label CSVs ------------------------------------------------------------------

TRAIN_HEADER = "id,url,landmark_id\n"


@pytest.mark.parametrize(
    "bad_row, shown",
    [
        ("00ab,u,12.5", "'12.5'"),
        ("00ab,u,9223372036854775808", "'9223372036854775808'"),
        ("00ab,u,99999999999999999999", "'99999999999999999999'"),
        ("00ab,u,-4", "'-4'"),
        ("00ab,u,", "''"),
        ("00ab,u,seven", "'seven'"),
    ],
)
def test_a_bad_landmark_id_in_train_csv_names_file_row_and_column(tmp_path, bad_row, shown):
    path = tmp_path / "train.csv"
    path.write_text(f"{TRAIN_HEADER}00aa,u,5\n{bad_row}\n00ac,u,7\n")
    with pytest.raises(ValueError) as caught:
        labels.read_train_labels(str(path))
    message = str(caught.value)
    assert message.startswith(f"{path}: row 3, column landmark_id: {shown} ")
    assert "\n" not in message


def test_the_largest_landmark_id_is_accepted(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(f"{TRAIN_HEADER}00aa,u,9223372036854775807\n00ab,u,0\n")
    assert labels.read_train_labels(str(path)) == {"00aa": 2**63 - 1, "00ab": 0}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("id,url\n00aa,u\n", "row 1: no column landmark_id"),
        ("", "empty file; expected the header id,url,landmark_id"),
        (f"{TRAIN_HEADER}00aa,u,1\n,u,2\n", "row 3, column id: empty"),
    ],
)
def test_a_train_csv_without_its_columns_names_the_file(tmp_path, text, expected):
    path = tmp_path / "train.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{path}: {expected}"):
        labels.read_train_labels(str(path))


@pytest.mark.parametrize(
    "text, expected",
    [
        ("landmark_id,images\n1,a\n12.5,b\n", "row 3, column landmark_id: '12.5'"),
        ("landmark_id,images\n99999999999999999999,a\n", "row 2, column landmark_id: '9999"),
        ("landmark_id\n1\n", "row 1: no column images"),
        ("images,landmark\na,1\n", "row 1: no column landmark_id"),
        ("", "empty file"),
    ],
)
def test_a_bad_clean_csv_names_the_file_row_and_column(tmp_path, text, expected):
    path = tmp_path / "train_clean.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"^{path}: {expected}"):
        labels.read_clean_labels(str(path))


def test_a_landmark_with_more_images_than_a_csv_field_holds_by_default_is_read(tmp_path):
    """GLDv2's largest landmarks list ~10k ids in one field, past csv's 128 KiB default."""
    ids = [f"{i:016x}" for i in range(10_000)]
    path = tmp_path / "train_clean.csv"
    path.write_text(f"landmark_id,images\n7,{' '.join(ids)}\n")
    # A fresh process: the csv module's limit is process-wide, and other tests raise it.
    code = (
        "import sys\nfrom delf_core.gldv2.labels import read_clean_labels\n"
        "print(len(read_clean_labels(sys.argv[1])))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["10000"]


def test_a_bad_train_csv_stops_planning_with_its_name(tmp_path):
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "00aa.jpg").write_bytes(small_jpeg())
    csv_path = tmp_path / "train.csv"
    csv_path.write_text(f"{TRAIN_HEADER}00aa,u,12.5\n")
    config = BuildConfig(
        train_directory=str(tmp_path / "train"),
        train_csv_path=str(csv_path),
        output_directory=str(tmp_path / "out"),
    )
    with pytest.raises(ValueError, match=f"{csv_path}: row 2, column landmark_id"):
        plan_build(config)


# --- 5. empty splits ----------------------------------------------------------------


@pytest.fixture()
def tiny_train(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    for index, image_id in enumerate(("00aa", "00ab", "00ac")):
        (folder / f"{image_id}.jpg").write_bytes(small_jpeg(index))
    return tmp_path


def _clean_config(root, clean_text: str, **overrides) -> BuildConfig:
    clean = root / "train_clean.csv"
    clean.write_text(clean_text)
    values = dict(
        train_directory=str(root / "train"),
        train_clean_csv_path=str(clean),
        output_directory=str(root / "out"),
        num_shards=2,
    )
    values.update(overrides)
    return BuildConfig(**values)


def test_a_clean_csv_with_no_rows_is_an_error_naming_it(tiny_train):
    config = _clean_config(tiny_train, "landmark_id,images\n")
    with pytest.raises(ValueError) as caught:
        plan_build(config)
    message = str(caught.value)
    assert message.startswith(f"{config.train_clean_csv_path}: lists no image")
    assert "train split would be empty" in message and "--allow_empty" in message
    assert not (tiny_train / "out").exists()


def test_allow_empty_builds_the_empty_split(tiny_train):
    plan = plan_build(_clean_config(tiny_train, "landmark_id,images\n", allow_empty=True))
    assert plan.counts() == {"train": 0} and len(plan.shards) == 2


def test_a_clean_csv_none_of_whose_images_is_on_disk_is_an_error(tiny_train):
    config = _clean_config(tiny_train, "landmark_id,images\n7,ffff eeee\n")
    with pytest.raises(ValueError, match=r"none of its 2 images is in .*train split would"):
        plan_build(config)


def test_single_image_classes_leave_train_empty_which_is_an_error(tiny_train):
    config = _clean_config(
        tiny_train,
        "landmark_id,images\n1,00aa\n2,00ab\n",
        generate_train_validation_splits=True,
    )
    with pytest.raises(ValueError, match="no class has two images.*the train split would"):
        plan_build(config)


def test_a_test_folder_without_images_is_an_error_naming_it(tiny_train):
    (tiny_train / "test").mkdir()
    config = _clean_config(
        tiny_train,
        "landmark_id,images\n1,00aa 00ab 00ac\n",
        test_directory=str(tiny_train / "test"),
        test_csv_path="test.csv",
    )
    with pytest.raises(ValueError, match=f"^{tiny_train / 'test'}: no \\*.jpg image"):
        plan_build(config)


def test_a_folder_named_like_an_image_is_not_one(tiny_train):
    (tiny_train / "train" / "00ad.jpg").mkdir()
    plan = plan_build(_clean_config(tiny_train, "landmark_id,images\n1,00aa 00ab 00ad\n"))
    assert plan.counts() == {"train": 2}
    assert [(p.image_id, p.problem) for p in plan.problems] == [("00ad", "missing")]


# --- 4. the output folder before a rebuild ------------------------------------------


def test_prepare_output_drops_the_manifest_stale_shards_and_leftovers(tmp_path):
    from delf_core.build_image_dataset import MANIFEST_NAME, REPORT_NAME
    from delf_core.build_image_dataset.folder import prepare_output

    out = tmp_path / "out"
    out.mkdir()
    stale = [
        MANIFEST_NAME,
        REPORT_NAME,
        "relabeling.csv",
        "train-00000-of-00016",
        "validation-00015-of-00016",
        "test-00000-of-00004",  # a split this build does not make
        ".train-00001-of-00004.1a2b3c4d.tmp",  # a shard being written when killed
        f".{MANIFEST_NAME}.0badbeef.tmp",
    ]
    others = ["notes.txt", "train-extra.csv", ".other.12345678.tmp", "train-00000-of-00004"]
    for name in stale + others:
        (out / name).write_bytes(b"x")
    (out / ".build_image_dataset" / "0123456789abcdef").mkdir(parents=True)
    (out / ".build_image_dataset" / "0123456789abcdef" / "context.json").write_text("{}")

    removed = prepare_output(str(out), ["train-00000-of-00004", "train-00001-of-00004"])

    assert sorted(p.name for p in out.iterdir()) == sorted(others)
    assert removed[0] == MANIFEST_NAME
    assert sorted(removed) == sorted([*stale, ".build_image_dataset"])


def test_prepare_output_on_an_object_store(tmp_path):
    import fsspec

    from delf_core.build_image_dataset import MANIFEST_NAME
    from delf_core.build_image_dataset.folder import prepare_output

    out = f"memory://{tmp_path.name}/tfrecord"
    assert prepare_output(out, ["train-00000-of-00001"]) == []  # nothing there yet
    fs = fsspec.filesystem("memory")
    for name in (MANIFEST_NAME, "train-00000-of-00002", "train-00000-of-00001", "keep.txt"):
        fs.pipe(f"{out}/{name}", b"x")

    assert prepare_output(out, ["train-00000-of-00001"]) == [
        MANIFEST_NAME,
        "train-00000-of-00002",
    ]
    assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls(out, detail=False)) == [
        "keep.txt",
        "train-00000-of-00001",
    ]
