"""The TFRecord schema of GLDv2 examples and the shard names, for writer, reader and docs."""

from __future__ import annotations

import numpy as np

# Feature keys, exactly as the original builder writes them (REFERENCE §2).
HEIGHT = "image/height"
WIDTH = "image/width"
COLORSPACE = "image/colorspace"
CHANNELS = "image/channels"
FORMAT = "image/format"
ID = "image/id"
ENCODED = "image/encoded"
LABEL = "image/class/label"
# Parsed by the original reader although never written (its docstring's name for the id).
FILENAME = "image/filename"

TRAIN_PREFIX, VALIDATION_PREFIX, TEST_PREFIX = "train", "validation", "test"


def shard_name(prefix: str, index: int, num_shards: int) -> str:
    """`train-00003-of-00128`: the original's '%s-%.5d-of-%.5d'."""
    return f"{prefix}-{index:05d}-of-{num_shards:05d}"


def shard_boundaries(count: int, num_shards: int) -> list[int]:
    """Record offsets where each shard starts, plus the end: linspace truncated, as the original."""
    return [int(b) for b in np.linspace(0, count, num_shards + 1).astype(np.int64)]


def make_example(
    image_id: str, encoded: bytes, height: int, width: int, label: int | None = None
) -> bytes:
    """A serialized tf.train.Example with the original's keys; `label` None for test images."""
    import tensorflow as tf

    def int64(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    def raw(value: bytes) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[value]))

    feature = {
        HEIGHT: int64(height),
        WIDTH: int64(width),
        COLORSPACE: raw(b"RGB"),
        CHANNELS: int64(3),
        FORMAT: raw(b"JPEG"),
        ID: raw(image_id.encode("utf-8")),
        ENCODED: raw(encoded),
    }
    if label is not None:
        feature[LABEL] = int64(label)
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    # Deterministic: map entries in key order, so a rebuild gives the same bytes anywhere.
    return example.SerializeToString(deterministic=True)


def feature_spec() -> dict:
    """The original reader's parse spec (googlelandmarks.py): a missing label parses as 0."""
    import tensorflow as tf

    return {
        HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        ENCODED: tf.io.FixedLenFeature([], tf.string, default_value=""),
        LABEL: tf.io.FixedLenFeature([], tf.int64, default_value=0),
    }


def parse_example(serialized) -> dict:
    """Parses one serialized example (a tf string tensor) with `feature_spec()`."""
    import tensorflow as tf

    return tf.io.parse_single_example(serialized, feature_spec())
