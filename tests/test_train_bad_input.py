"""`delf train` on bad TFRecords: one line naming the pattern or the file, in seconds."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from delf_cli.main import main
from delf_core import records
from delf_core.training import data_checks, loop

SIZE = 32
# Long enough for TensorFlow to start on a loaded machine; the fixed code exits in seconds.
DEADLINE_S = 600


def jpeg(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_records(path, serialized: list[bytes]) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for record in serialized:
            writer.write(record)
    return str(path)


def examples(count: int, first: int = 0) -> list[bytes]:
    return [
        records.make_example(f"{first + i:016x}", jpeg(first + i), 40, 48, (first + i) % 3)
        for i in range(count)
    ]


def split(folder, prefix: str, shards: int = 2, per_shard: int = 4) -> str:
    """`prefix-0000k-of-0000n` shards of labelled GLDv2 examples; returns their pattern."""
    folder.mkdir(parents=True, exist_ok=True)
    for shard in range(shards):
        name = records.shard_name(prefix, shard, shards)
        write_records(folder / name, examples(per_shard, first=100 * shard))
    return str(folder / f"{prefix}-*")


def argv(train: str, validation: str, logdir, *flags: str) -> list[str]:
    return [
        "train",
        f"--train_file_pattern={train}",
        f"--validation_file_pattern={validation}",
        f"--logdir={logdir}",
        "--num_classes=3",
        f"--image_size={SIZE}",
        "--batch_size=2",
        "--max_iters=2",
        "--nouse_autoencoder",
        *flags,
    ]


def error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_model(monkeypatch):
    """Bad data must be found before the model is built: building it fails the test."""

    def built(*_args, **_kwargs):
        raise AssertionError("the model was built before the data was checked")

    monkeypatch.setattr(loop, "build_model_and_optimizer", built)


@pytest.mark.integration
@pytest.mark.parametrize("empty", ["train", "validation"])
def test_shards_with_no_records_fail_at_once_instead_of_hanging(tmp_path, empty):
    # A subprocess with a deadline: on the empty repeated dataset tf.data would spin in
    # C++ for ever, where no Python timeout reaches.
    patterns = {name: split(tmp_path / "data", name) for name in ("train", "validation")}
    for shard in range(2):
        (tmp_path / "data" / records.shard_name(empty, shard, 2)).write_bytes(b"")
    command = [sys.executable, "-m", "delf_cli.main", *argv(**patterns, logdir=tmp_path / "l")]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "CUDA_VISIBLE_DEVICES": "-1"},
    )
    try:
        _, err = process.communicate(timeout=DEADLINE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()
        pytest.fail(f"delf train on empty {empty} shards still ran after {DEADLINE_S} s")
    assert process.returncode == 2, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last == (
        f"delf train: error: --{empty}_file_pattern={patterns[empty]}: the 2 matching "
        "file(s) hold no records; rebuild them with `delf build_image_dataset`"
    )
    assert not (tmp_path / "l" / "train_manifest.json").exists()


def test_a_pattern_matching_no_file_fails_before_the_model_is_built(tmp_path, capsys, no_model):
    validation = split(tmp_path / "data", "validation")
    typo = str(tmp_path / "data" / "trian-*")
    assert main(argv(typo, validation, tmp_path / "logs")) == 2
    assert error_line(capsys) == (
        f"delf train: error: --train_file_pattern={typo}: no file matches; "
        "check the path and pattern"
    )


def _not_tfrecords(path):
    path.write_text("id,url,landmark_id\n1,http://x,2\n" * 20)


def _not_an_example(path):
    write_records(path, [b"\xff\x00 not a protocol buffer \xff"])


def _no_image(path):
    example = tf.train.Example()
    example.features.feature[records.LABEL].int64_list.value.append(1)
    write_records(path, [example.SerializeToString()])


def _test_split(path):
    write_records(path, [records.make_example("0000", jpeg(0), 40, 48, label=None)])


def _not_a_jpeg(path):
    write_records(path, [records.make_example("0000", b"GIF89a not an image", 40, 48, 1)])


@pytest.mark.parametrize(
    "make, problem",
    [
        (_not_tfrecords, "not a TFRecord file (from --train_file_pattern="),
        (_not_an_example, "its first record is not a tf.train.Example"),
        (_no_image, "its first record has no image/encoded image"),
        (_test_split, "its first record has no image/class/label: test-split records?"),
        (_not_a_jpeg, "its first record does not decode"),
    ],
)
def test_a_first_record_of_another_schema_fails_naming_the_file(
    tmp_path, capsys, no_model, make, problem
):
    validation = split(tmp_path / "data", "validation")
    bad = tmp_path / "data" / "train-00000-of-00001"
    make(bad)
    assert main(argv(str(bad), validation, tmp_path / "logs")) == 2
    line = error_line(capsys)
    assert line.startswith(f"delf train: error: {bad}: ") and problem in line, line


def test_a_folder_matching_the_pattern_is_named(tmp_path, capsys, no_model):
    validation = split(tmp_path / "data", "validation")
    (tmp_path / "data" / "train").mkdir()
    pattern = str(tmp_path / "data" / "train*")
    assert main(argv(pattern, validation, tmp_path / "logs")) == 2
    assert error_line(capsys) == (
        f"delf train: error: {tmp_path}/data/train: a folder, not a TFRecord file; "
        "narrow --train_file_pattern"
    )


def test_the_flow_does_not_retry_a_run_on_bad_records():
    from flows.retries import unless_bad_input as _worth_retrying

    class Failed:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def result(self, raise_on_failure: bool = True) -> Exception:
            return self.error

    assert not _worth_retrying(None, None, Failed(data_checks.RecordsError("bad shard")))
    assert _worth_retrying(None, None, Failed(MemoryError()))


def truncate(path: str, drop: int) -> int:
    """Cuts `drop` bytes off the end of `path`; returns its new size."""
    with open(path, "rb+") as handle:
        size = handle.seek(0, os.SEEK_END) - drop
        handle.truncate(size)
    return size


@pytest.mark.integration
@pytest.mark.parametrize("damaged", ["train", "validation"])
def test_a_truncated_shard_fails_with_one_line_naming_it(tmp_path, capsys, damaged):
    patterns = {name: split(tmp_path / "data", name) for name in ("train", "validation")}
    bad = str(tmp_path / "data" / records.shard_name(damaged, 1, 2))
    # Into the last record's image: the first record is whole, so only a read finds it.
    truncate(bad, 300)

    assert main(argv(**patterns, logdir=tmp_path / "logs")) == 2

    line = error_line(capsys)
    assert line.startswith(f"delf train: error: {bad}: damaged TFRecord file: the record at "), line
    assert "rebuild the shards with `delf build_image_dataset` or remove the file" in line


def test_the_damaged_file_is_found_from_the_offset_tensorflow_reports(tmp_path):
    folder = tmp_path / "data"
    split(folder, "train", shards=3)
    files = sorted(str(p) for p in folder.glob("train-*"))
    # One shard cut inside its last record's header, one with a flipped image byte.
    whole = Path(files[0]).read_bytes()
    last = len(whole) - 16 - len(examples(4)[-1])  # where the last record starts
    truncate(files[0], len(whole) - last - 5)
    corrupt = bytearray(Path(files[2]).read_bytes())
    corrupt[-100] ^= 0xFF
    Path(files[2]).write_bytes(bytes(corrupt))

    def error(text: str) -> tf.errors.OpError:
        return tf.errors.DataLossError(None, None, f"{text} [Op:IteratorGetNext]")

    short = data_checks.read_error("flag", str(folder / "*"), error(f"truncated record at {last}"))
    assert str(short).startswith(f"{files[0]}: damaged TFRecord file: truncated: 5 bytes")
    offset = len(corrupt) - 16 - len(examples(4, first=200)[-1])
    bad = data_checks.read_error("flag", str(folder / "*"), error(f"corrupted record at {offset}"))
    assert str(bad).startswith(f"{files[2]}: damaged TFRecord file: the record at byte {offset}")
    # Nowhere to be found: the pattern and TensorFlow's reason, still on one line.
    # In a graph (the training step) the reason sits between a node's stack and its name.
    graph = (
        "Graph execution error:\n\nDetected at node GetNext defined at (most recent call "
        "last):\n<stack traces unavailable>\ntruncated record at 99999\n\t [[{{node GetNext}}]]"
    )
    lost = data_checks.read_error("flag", str(folder / "*"), error(graph))
    assert str(lost) == (
        f"--flag={folder}/*: a matching file has a bad record (truncated record at 99999); "
        "rebuild the shards with `delf build_image_dataset`"
    )
    # Errors that are not about the records' bytes are the caller's.
    other = tf.errors.InvalidArgumentError(None, None, "Incompatible shapes: [2,3] vs. [2,4]")
    assert data_checks.read_error("flag", str(folder / "*"), other) is None


def test_masked_crc_is_the_tfrecord_checksum(tmp_path):
    path = write_records(tmp_path / "one", [b"hello"])
    data = Path(path).read_bytes()
    assert data_checks.masked_crc(data[:8]) == int.from_bytes(data[8:12], "little")
    assert data_checks.masked_crc(b"hello") == int.from_bytes(data[-4:], "little")
