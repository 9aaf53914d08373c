"""tf.data input pipeline over GLDv2 TFRecords: parse, augment, batch, prefetch."""

from __future__ import annotations

import tensorflow as tf

from delf_core import records

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_SHUFFLE_BUFFER = 1024
DEFAULT_CYCLE_LENGTH = 8
# Read-ahead per shard: large sequential reads matter on gs://, and 8 shards x 8 MiB is cheap.
READ_BUFFER_BYTES = 8 << 20

# The original's ImageNet-style crop (googlelandmarks.py, REFERENCE §3).
_WHOLE_IMAGE = [[[0.0, 0.0, 1.0, 1.0]]]
_CROP_ARGS = dict(
    min_object_covered=0.1,
    aspect_ratio_range=(3.0 / 4.0, 4.0 / 3.0),
    area_range=(0.08, 1.0),
    max_attempts=100,
    use_image_if_no_bounding_boxes=True,
)


def normalise(image: tf.Tensor) -> tf.Tensor:
    """Maps uint8 pixels to float32 in [-1, 127/128], as the original: (x - 128) / 128."""
    return (tf.cast(image, tf.float32) - 128.0) / 128.0


def decode(encoded: tf.Tensor) -> tf.Tensor:
    """Decodes JPEG bytes to uint8 [H, W, 3]; grayscale JPEGs become three equal channels."""
    return tf.io.decode_jpeg(encoded, channels=3)


def random_crop_window(shape: tf.Tensor, seed: tf.Tensor | None = None) -> tf.Tensor:
    """Samples the original's crop for an image of `shape` [H, W, C]: [y, x, height, width].

    Args:
      shape: the image's shape, e.g. `tf.io.extract_jpeg_shape(encoded)`.
      seed: a [2] integer tensor for a reproducible crop; None draws from the op's state.

    Returns:
      An int32 [4] window.
    """
    if seed is None:
        begin, size, _ = tf.image.sample_distorted_bounding_box(
            shape, bounding_boxes=_WHOLE_IMAGE, **_CROP_ARGS
        )
    else:
        begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
            shape, bounding_boxes=_WHOLE_IMAGE, seed=seed, **_CROP_ARGS
        )
    return tf.stack([begin[0], begin[1], size[0], size[1]])


def preprocess_image(
    encoded: tf.Tensor, image_size: int, augmentation: bool, seed: tf.Tensor | None = None
) -> tf.Tensor:
    """JPEG bytes to a float32 [S, S, 3] image in [-1, 127/128], as the original reader.

    With augmentation: a random crop (`random_crop_window`), resized with 'area'; never
    flipped. Without: the whole image resized bilinearly to S x S (aspect ratio not kept).

    Args:
      encoded: a scalar string tensor of JPEG bytes.
      image_size: S, the side of the output.
      augmentation: crop at random (training) or not (validation).
      seed: a [2] integer tensor making the crop reproducible; None for a stateful draw.

    Returns:
      The image, float32 [S, S, 3].
    """
    size = [image_size, image_size]
    if not augmentation:
        return tf.image.resize(normalise(decode(encoded)), size, method="bilinear")
    window = random_crop_window(tf.io.extract_jpeg_shape(encoded), seed)
    # Decoding only the window is exact for unsubsampled JPEGs and within a few grey levels
    # at the window's edge otherwise (chroma upsampling sees fewer neighbours); it skips
    # decoding the ~half of the pixels the crop throws away, which is most of the work.
    crop = tf.io.decode_and_crop_jpeg(encoded, window, channels=3)
    # Normalising is per pixel, so doing it after the crop is the original's order in effect.
    return tf.image.resize(normalise(crop), size, method="area")


def parse_and_preprocess(
    serialized: tf.Tensor, image_size: int, augmentation: bool, seed: tf.Tensor | None = None
) -> tuple[tf.Tensor, tf.Tensor]:
    """One serialized example to (image float32 [S, S, 3], label int64 []).

    The label is passed through unchanged (a missing one parses as 0): the trainer checks
    its range, where the original silently clipped it.
    """
    example = records.parse_example(serialized)
    image = preprocess_image(example[records.ENCODED], image_size, augmentation, seed)
    return image, example[records.LABEL]


def list_files(file_pattern: str) -> list[str]:
    """The files matching `file_pattern` (local or gs://), sorted; ValueError if none."""
    files = sorted(tf.io.gfile.glob(file_pattern))
    if not files:
        raise ValueError(f"no TFRecord file matches {file_pattern!r}: check the path and pattern")
    return files


def create_dataset(
    file_pattern: str,
    image_size: int,
    batch_size: int,
    augmentation: bool = False,
    seed: int = 0,
    *,
    shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER,
    repeat: bool = True,
    deterministic: bool = False,
    num_parallel_reads: int | None = None,
    drop_remainder: bool = False,
    max_examples: int | None = None,
) -> tf.data.Dataset:
    """Batches of (images float32 [B, S, S, 3], labels int64 [B]) from GLDv2 TFRecords.

    The original's `CreateDataset` (REFERENCE §3), with the same images and labels, read
    in parallel: shards are shuffled and interleaved, serialized records go through a
    shuffle buffer, parsing and augmentation run in parallel, and batches are prefetched.

    Args:
      file_pattern: a glob of TFRecord shards, local or gs://.
      image_size: S, the side of the square output images.
      batch_size: B.
      augmentation: random crops (training); else a plain resize (validation).
      seed: seeds the shard order, the shuffle buffer and the crops.
      shuffle_buffer: records held for shuffling (default 1024; the original used 100;
        1 turns shuffling off). It holds serialized records, so its memory is about this
        many JPEG files.
      repeat: cycle over the data forever, reshuffling shards each epoch.
      deterministic: same seed, same batches, at some cost in speed; otherwise elements
        may come out in whatever order parallel reads and maps finish.
      num_parallel_reads: shards read at once; default min(8, number of shards).
      drop_remainder: drop the last short batch, for a static batch dimension.
      max_examples: stop after this many records (after shuffling); with `repeat` off,
        at most one pass either way.

    Returns:
      The dataset.

    Raises:
      ValueError: when no file matches `file_pattern`.
    """
    files = list_files(file_pattern)
    cycle_length = num_parallel_reads or min(DEFAULT_CYCLE_LENGTH, len(files))

    dataset = tf.data.Dataset.from_tensor_slices(files)
    dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    # Repeating the shard list, not the records, keeps the shuffle buffer full across
    # epoch boundaries instead of draining and refilling it each epoch.
    if repeat:
        dataset = dataset.repeat()
    dataset = dataset.interleave(
        lambda path: tf.data.TFRecordDataset(path, buffer_size=READ_BUFFER_BYTES),
        cycle_length=cycle_length,
        block_length=1,
        num_parallel_calls=AUTOTUNE,
    )
    if shuffle_buffer > 1:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if max_examples is not None:
        dataset = dataset.take(max_examples)

    # Each crop is keyed by (seed, position in the stream), so it does not depend on which
    # worker thread runs it, and the same record gets a new crop in every epoch.
    def parse(index: tf.Tensor, serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        crop_seed = tf.stack([tf.constant(seed, tf.int64), index])
        return parse_and_preprocess(serialized, image_size, augmentation, crop_seed)

    dataset = dataset.enumerate().map(parse, num_parallel_calls=AUTOTUNE)
    dataset = dataset.batch(batch_size, drop_remainder=drop_remainder, num_parallel_calls=AUTOTUNE)
    dataset = dataset.prefetch(AUTOTUNE)

    options = tf.data.Options()
    options.deterministic = deterministic
    return dataset.with_options(options)
