"""The tf.data input pipeline on a few shards of real JPEG records."""

from __future__ import annotations

import collections
import io
import re

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from sklearn.datasets import load_sample_images

from delf_core import input_pipeline, records

NUM_SHARDS = 4
PER_SHARD = 6
SIZE = 48
TOP = 127.0 / 128.0


def jpeg(pixels: np.ndarray, **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90, **save_args)
    return buffer.getvalue()


def write(path, examples) -> str:
    with tf.io.TFRecordWriter(str(path)) as writer:
        for example in examples:
            writer.write(example)
    return str(path)


def example(image_id: str, data: bytes, label: int | None) -> bytes:
    height, width = tf.io.decode_jpeg(data).shape[:2]
    return records.make_example(image_id, data, height, width, label)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Shards of photo crops with label 100 * shard + position, and single-record files."""
    root = tmp_path_factory.mktemp("input_pipeline")
    rng = np.random.default_rng(0)
    photos = load_sample_images().images
    labels = {}
    for shard in range(NUM_SHARDS):
        examples = []
        for position in range(PER_SHARD):
            photo = photos[(shard + position) % len(photos)]
            height, width = rng.integers(60, 140), rng.integers(60, 140)
            y, x = rng.integers(0, photo.shape[0] - height), rng.integers(0, photo.shape[1] - width)
            label = 100 * shard + position
            labels[label] = jpeg(np.ascontiguousarray(photo[y : y + height, x : x + width]))
            examples.append(example(f"{label:016d}", labels[label], label))
        write(root / records.shard_name("train", shard, NUM_SHARDS), examples)

    halves = np.zeros((90, 160, 3), np.uint8)
    halves[:, 80:] = 255
    gray = np.asarray(Image.fromarray(photos[0]).convert("L"))[:100, :120]
    return {
        "pattern": str(root / "train-*"),
        "labels": labels,
        "halves": write(root / "halves", [example("halves", jpeg(halves), 7)]),
        "gray": write(root / "gray", [example("gray", jpeg(gray), 10**6)]),
        "unlabelled": write(root / "unlabelled", [example("test", labels[0], None)]),
    }


def first_batch(pattern: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    images, labels = next(iter(input_pipeline.create_dataset(pattern, **kwargs)))
    return images.numpy(), labels.numpy()


def one_epoch(pattern: str, **kwargs) -> tuple[np.ndarray, np.ndarray]:
    batches = list(input_pipeline.create_dataset(pattern, repeat=False, **kwargs))
    return (
        np.concatenate([images.numpy() for images, _ in batches]),
        np.concatenate([labels.numpy() for _, labels in batches]),
    )


@pytest.mark.parametrize("augmentation", [False, True])
def test_batches_have_the_original_shapes_dtypes_and_range(data, augmentation):
    images, labels = first_batch(
        data["pattern"], image_size=SIZE, batch_size=8, augmentation=augmentation
    )
    assert images.shape == (8, SIZE, SIZE, 3) and images.dtype == np.float32
    assert labels.shape == (8,) and labels.dtype == np.int64
    # 'area' resizing sums in float32, so the bounds hold up to rounding.
    assert images.min() >= -1.0 - 1e-5 and images.max() <= TOP + 1e-5


def test_one_epoch_yields_every_record_once_with_its_label(data):
    _, labels = one_epoch(data["pattern"], image_size=SIZE, batch_size=5)
    assert sorted(labels.tolist()) == sorted(data["labels"])


def test_validation_images_are_a_bilinear_resize_of_the_normalised_image(data):
    images, labels = one_epoch(data["pattern"], image_size=SIZE, batch_size=7)
    label = int(labels[3])
    decoded = tf.io.decode_jpeg(data["labels"][label], channels=3)
    expected = tf.image.resize((tf.cast(decoded, tf.float32) - 128.0) / 128.0, [SIZE, SIZE])
    np.testing.assert_allclose(images[3], expected.numpy(), atol=1e-6)


@pytest.mark.parametrize("subsampling, atol", [(0, 1e-6), (2, 0.1)])
def test_a_seeded_crop_is_the_original_slice_of_the_normalised_image(subsampling, atol):
    photo = load_sample_images().images[1]
    encoded = tf.constant(jpeg(photo, subsampling=subsampling))
    normalised = (tf.cast(tf.io.decode_jpeg(encoded, channels=3), tf.float32) - 128.0) / 128.0
    for index in range(5):
        seed = tf.constant([3, index], tf.int64)
        got = input_pipeline.preprocess_image(encoded, SIZE, augmentation=True, seed=seed)
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            tf.shape(normalised),
            bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
            seed=seed,
            min_object_covered=0.1,
            aspect_ratio_range=(3 / 4, 4 / 3),
            area_range=(0.08, 1.0),
            max_attempts=100,
            use_image_if_no_bounding_boxes=True,
        )
        crop = tf.slice(normalised, begin, size)
        expected = tf.image.resize(crop, [SIZE, SIZE], method="area")
        # Chroma-subsampled JPEGs differ by a few grey levels along the window's edge only.
        np.testing.assert_allclose(got, expected, atol=atol)
        assert np.abs(got - expected).mean() < 1e-3


def test_augmentation_crops_differ_across_epochs_and_never_flip(data):
    dataset = input_pipeline.create_dataset(
        data["halves"], image_size=32, batch_size=1, augmentation=True, shuffle_buffer=1
    )
    crops = [images.numpy()[0] for images, _ in dataset.take(24)]
    assert len({crop.tobytes() for crop in crops}) > 12
    across_the_edge = 0
    for crop in crops:
        left, right = crop[:, :16].mean(), crop[:, 16:].mean()
        # Black is on the left of the source: a flip would make the left side brighter.
        assert left <= right + 1e-3
        across_the_edge += right - left > 0.5
    assert across_the_edge > 0


def test_the_same_seed_gives_the_same_batches_and_another_seed_others(data):
    def batch(seed):
        return first_batch(
            data["pattern"],
            image_size=SIZE,
            batch_size=8,
            augmentation=True,
            seed=seed,
            deterministic=True,
        )

    (images, labels), (again, labels_again), (other, other_labels) = batch(1), batch(1), batch(2)
    np.testing.assert_array_equal(images, again)
    np.testing.assert_array_equal(labels, labels_again)
    assert not np.array_equal(labels, other_labels) or not np.array_equal(images, other)


def test_a_first_batch_mixes_shards_even_without_shuffling(data):
    _, labels = first_batch(data["pattern"], image_size=SIZE, batch_size=4, shuffle_buffer=1)
    shards = collections.Counter(int(label) // 100 for label in labels)
    assert len(shards) > 1


def test_labels_are_not_clipped_and_grayscale_gives_three_channels(data):
    for augmentation in (False, True):
        images, labels = first_batch(
            data["gray"], image_size=SIZE, batch_size=32, augmentation=augmentation
        )
        assert images.shape[-1] == 3
        assert labels[0] == 10**6
        np.testing.assert_array_equal(images[..., 0], images[..., 2])


def test_a_missing_label_parses_as_zero(data):
    _, labels = one_epoch(data["unlabelled"], image_size=SIZE, batch_size=1)
    assert labels.tolist() == [0]


def test_drop_remainder_gives_a_static_batch_dimension(data):
    dataset = input_pipeline.create_dataset(
        data["pattern"], image_size=SIZE, batch_size=5, repeat=False, drop_remainder=True
    )
    assert dataset.element_spec[0].shape == (5, SIZE, SIZE, 3)
    assert sum(1 for _ in dataset) == NUM_SHARDS * PER_SHARD // 5


def test_max_examples_stops_one_pass_early_and_never_repeats(data):
    _, labels = one_epoch(data["pattern"], image_size=SIZE, batch_size=5, max_examples=7)
    assert len(labels) == 7 and len(set(labels.tolist())) == 7
    _, labels = one_epoch(data["pattern"], image_size=SIZE, batch_size=5, max_examples=10**6)
    assert sorted(labels.tolist()) == sorted(data["labels"])


def test_a_pattern_matching_no_file_is_a_value_error_naming_it(tmp_path):
    pattern = str(tmp_path / "nothing-*")
    with pytest.raises(ValueError, match=re.escape(pattern)):
        input_pipeline.create_dataset(pattern, image_size=SIZE, batch_size=1)
