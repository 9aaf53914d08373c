"""Checks of the TFRecords train reads: up front, cheaply, and when a read fails.

Up front (`check_records`), before the model is built: the pattern matches files, they
hold a record, and the first record is a GLDv2 example that the input pipeline decodes.
A typo or a wrong folder then fails in seconds, and empty shards cannot make the
repeated dataset spin for ever.

A damaged shard deeper in (a truncated copy) is found only when tf.data reaches it, and
TensorFlow's DataLossError names a byte offset but not the file. Checking every record
up front would read all of GLDv2 (1.58M images) before each run, so instead, on failure,
`read_error` looks at that offset in each matching file: one header read per file, and
only when something is already wrong.

And the class count, when the build manifest beside the train shards gives it.
"""

from __future__ import annotations

import json
import posixpath
import re
import struct

import tensorflow as tf
from google.protobuf.message import DecodeError

from delf_core import records
from delf_core.build_image_dataset.report import MANIFEST_NAME
from delf_core.input_pipeline import parse_and_preprocess
from delf_core.training.config import FROM_MANIFEST, NUM_CLASSES, TrainConfig

try:  # the C crc32c that gcsfs brings; the pure-Python one below is the fallback
    import google_crc32c
except ImportError:  # pragma: no cover
    google_crc32c = None

# A TFRecord: uint64 length, uint32 masked crc32c of the length, data, uint32 masked
# crc32c of the data (tensorflow/core/lib/io/record_writer.h).
HEADER_BYTES = 12
FOOTER_BYTES = 4
_FIX = "rebuild the shards with `delf build_image_dataset` or remove the file"
_DAMAGE = re.compile(r"(truncated|corrupted) record at (\d+)")
# InvalidArgumentErrors that come from a record's bytes, not from the model.
_BAD_RECORD = re.compile(
    r"jpeg|image file format|could not parse example|key: image/|feature: image/", re.I
)


class RecordsError(ValueError):
    """The TFRecords a flag names are missing, empty, of another schema, or damaged."""


def _crc_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
        table.append(crc)
    return table


_TABLE = _crc_table()


def _crc32c(data: bytes) -> int:
    if google_crc32c is not None:
        return google_crc32c.value(data)
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """The checksum TFRecords store: crc32c rotated right by 15 plus a constant."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def inspect_record(handle, offset: int, size: int) -> tuple[str, bytes | str]:
    """What lies at `offset` of an open TFRecord file of `size` bytes.

    Returns:
      ("ok", the record's data); ("short", detail) when fewer than a header's bytes are
      left; ("no_header", detail) when the bytes there are not a record header (in a
      healthy file: not a record boundary); ("truncated" or "corrupt", detail) for a
      real record header whose record runs past the end or fails its checksum.
    """
    handle.seek(offset)
    header = handle.read(HEADER_BYTES)
    if len(header) < HEADER_BYTES:
        return "short", f"{size - offset} bytes at byte {offset}, less than a record header"
    length, length_crc = struct.unpack("<QI", header)
    if masked_crc(header[:8]) != length_crc:
        return "no_header", f"no TFRecord header at byte {offset}"
    end = offset + HEADER_BYTES + length + FOOTER_BYTES
    if end > size:
        return "truncated", f"the record at byte {offset} needs {end} bytes, the file has {size}"
    data = handle.read(length)
    (data_crc,) = struct.unpack("<I", handle.read(FOOTER_BYTES))
    if masked_crc(data) != data_crc:
        return "corrupt", f"the record at byte {offset} fails its checksum"
    return "ok", data


def check_records(flag: str, file_pattern: str, image_size: int, augmentation: bool) -> list[str]:
    """The files matching `file_pattern`, once their first record is known to be good.

    Reads the first record of the first non-empty file (the next files only while
    they are empty) and decodes it as the input pipeline will.

    Args:
      flag: the flag that gave the pattern, for the message.
      file_pattern: a glob of TFRecord shards, local or gs://.
      image_size: as the pipeline decodes the record.
      augmentation: as the pipeline decodes the record (random crops need a JPEG).

    Returns:
      The matching files, sorted.

    Raises:
      RecordsError: one line naming the pattern or the file and what to do.
    """
    try:
        files = sorted(tf.io.gfile.glob(file_pattern))
    except tf.errors.OpError as error:
        raise RecordsError(f"--{flag}={file_pattern}: cannot list it: {_reason(error)}") from None
    if not files:
        raise RecordsError(f"--{flag}={file_pattern}: no file matches; check the path and pattern")
    for path in files:
        try:
            if tf.io.gfile.isdir(path):
                raise RecordsError(f"{path}: a folder, not a TFRecord file; narrow --{flag}")
            size = tf.io.gfile.stat(path).length
            if size == 0:
                continue
            with tf.io.gfile.GFile(path, "rb") as handle:
                status, found = inspect_record(handle, 0, size)
        except tf.errors.OpError as error:
            raise RecordsError(f"{path}: cannot read it: {_reason(error)}") from None
        if status == "no_header":
            raise RecordsError(f"{path}: not a TFRecord file (from --{flag}={file_pattern})")
        if status != "ok":
            raise RecordsError(f"{path}: damaged TFRecord file: {found}; {_FIX}")
        _check_example(flag, path, found, image_size, augmentation)
        return files
    raise RecordsError(
        f"--{flag}={file_pattern}: the {len(files)} matching file(s) hold no records; "
        "rebuild them with `delf build_image_dataset`"
    )


def _check_example(flag: str, path: str, data: bytes, image_size: int, augmentation: bool) -> None:
    where = f"{path}: its first record"
    try:
        features = tf.train.Example.FromString(data).features.feature
    except DecodeError:
        raise RecordsError(f"{where} is not a tf.train.Example; {_FIX}") from None
    encoded = features[records.ENCODED].bytes_list.value if records.ENCODED in features else []
    if not encoded or not encoded[0]:
        raise RecordsError(
            f"{where} has no {records.ENCODED} image: not GLDv2 TFRecords of "
            f"`delf build_image_dataset` (--{flag})"
        )
    if records.LABEL not in features:
        raise RecordsError(
            f"{where} has no {records.LABEL}: test-split records? --{flag} needs the "
            "train or validation shards"
        )
    try:
        parse_and_preprocess(
            tf.constant(data), image_size, augmentation, tf.constant([0, 0], tf.int64)
        )
    except tf.errors.InvalidArgumentError as error:
        raise RecordsError(f"{where} does not decode: {_reason(error)}; {_FIX}") from None


def read_error(flag: str, file_pattern: str, error: tf.errors.OpError) -> RecordsError | None:
    """A one-line error naming the damaged file behind `error`; None if `error` is not
    about the records' bytes (then it is the caller's to raise).

    For a DataLossError at byte N, the file is the one whose record at N is truncated
    or fails its checksum: each matching file longer than N is looked at there.
    """
    is_loss = isinstance(error, tf.errors.DataLossError)
    if not is_loss and not (
        isinstance(error, tf.errors.InvalidArgumentError) and _BAD_RECORD.search(str(error))
    ):
        return None
    reason = _reason(error)
    match = _DAMAGE.search(str(error)) if is_loss else None
    if match:
        found = locate_damage(tf.io.gfile.glob(file_pattern), int(match.group(2)))
        if found is not None:
            path, detail = found
            return RecordsError(f"{path}: damaged TFRecord file: {detail}; {_FIX}")
    return RecordsError(
        f"--{flag}={file_pattern}: a matching file has a bad record ({reason}); "
        "rebuild the shards with `delf build_image_dataset`"
    )


def locate_damage(files: list[str], offset: int) -> tuple[str, str] | None:
    """(file, what is wrong) for the file whose record at byte `offset` is damaged.

    One header read per file longer than `offset`. A file cut inside the last record's
    header leaves too few bytes to tell a record boundary from the middle of a record;
    those few files are walked header by header up to `offset`.
    """
    short = []
    for path in sorted(files):
        size = tf.io.gfile.stat(path).length
        if size <= offset:
            continue
        with tf.io.gfile.GFile(path, "rb") as handle:
            status, detail = inspect_record(handle, offset, size)
            if status in ("truncated", "corrupt"):
                return path, str(detail)
            if status == "short":
                short.append((path, size, detail))
    for path, size, detail in short:
        if _is_record_boundary(path, offset, size):
            return path, f"truncated: {detail}"
    return None


def _is_record_boundary(path: str, offset: int, size: int) -> bool:
    """Whether walking the record headers of `path` from the start lands on `offset`."""
    position = 0
    with tf.io.gfile.GFile(path, "rb") as handle:
        while position < offset:
            handle.seek(position)
            header = handle.read(HEADER_BYTES)
            if len(header) < HEADER_BYTES:
                return False
            length, length_crc = struct.unpack("<QI", header)
            if masked_crc(header[:8]) != length_crc:
                return False
            position += HEADER_BYTES + length + FOOTER_BYTES
    return position == offset and position < size


def _reason(error: tf.errors.OpError) -> str:
    """TensorFlow's reason, on one line: without the node's stack, the function-node
    prefix and the op suffix. In a graph error the reason is the line before `[[node]]`.
    """
    lines = [line.strip() for line in error.message.splitlines() if line.strip()]
    nodes = [i for i, line in enumerate(lines) if line.startswith("[[")]
    text = lines[nodes[0] - 1] if nodes and nodes[0] > 0 else " ".join(lines)
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:.*", "", text).strip()


def resolve_num_classes(config: TrainConfig) -> int:
    """`--num_classes` if given, else the dataset version's, else the build manifest's.

    Raises:
      ValueError: with `--dataset_version=manifest` when no manifest sits beside the
        train shards.
    """
    if config.num_classes is not None:
        return config.num_classes
    if config.dataset_version in NUM_CLASSES:
        return NUM_CLASSES[config.dataset_version]
    path = posixpath.join(posixpath.dirname(config.train_file_pattern), MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise ValueError(
            f"--dataset_version={FROM_MANIFEST}: no {MANIFEST_NAME} beside "
            f"--train_file_pattern={config.train_file_pattern}; pass --num_classes"
        )
    with tf.io.gfile.GFile(path) as handle:
        return int(json.load(handle)["num_classes"])
