"""Image pre-processing for extraction: loading, resizing, normalising, receptive boxes."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from delf_core.features import _files
from delf_core.features.protos import delf_config_pb2

if TYPE_CHECKING:
    import tensorflow as tf

# Images whose resized height or width is below this give no features (REFERENCE §6.2).
MIN_IMAGE_SIZE = 10

# LOAD_TRUNCATED_IMAGES is a PIL-wide global; the lock keeps concurrent loads from
# restoring it under each other's feet.
_truncated_lock = threading.Lock()


@contextlib.contextmanager
def _truncated_images_allowed() -> Iterator[None]:
    with _truncated_lock:
        previous = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = previous


def decode_rgb(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Decodes image bytes to RGB, accepting truncated files as the original loader does.

    The EXIF orientation is ignored, as in the original, so that feature locations
    refer to the stored pixel grid.

    Args:
      data: encoded image (any format PIL reads).
      source: what to call the bytes in errors, usually their path.

    Returns:
      uint8 array [H, W, 3].

    Raises:
      ValueError: naming `source` when the bytes are not a readable image.
    """
    try:
        with _truncated_images_allowed(), Image.open(io.BytesIO(data)) as image:
            return np.array(image.convert("RGB"), dtype=np.uint8)
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        SyntaxError,
        ValueError,
    ) as err:
        raise ValueError(f"{source}: not a readable image ({err})") from err


def load_rgb(path: str) -> np.ndarray:
    """Loads an image file as RGB (see `decode_rgb`).

    Args:
      path: local path or URL.

    Returns:
      uint8 array [H, W, 3].

    Raises:
      ValueError: naming `path` when the file is not a readable image.
      FileNotFoundError: when there is no such file.
    """
    return decode_rgb(_files.read_bytes(path), source=path)


def resize_image(
    image: np.ndarray, config: delf_config_pb2.DelfConfig, resize_factor: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Resizes an image within the size bounds of a DelfConfig (REFERENCE §6.2).

    The bounds `max_image_size` and `min_image_size` (negative: no bound) are first
    multiplied by `resize_factor`. An image whose largest side exceeds the max bound
    is shrunk to it; else one whose largest side is under the min bound is enlarged to
    it; else, with `use_square_images`, a non-square image is stretched to a square of
    its largest side; otherwise it is returned as is. Resizing is PIL bilinear to
    (round(W·f), round(H·f)), or (round(L·f),)*2 for square output.

    Args:
      image: uint8 array [H, W, 3].
      config: the DelfConfig.
      resize_factor: positive factor on the size bounds (e.g. crop size / image size
        for query crops).

    Returns:
      (resized uint8 array, float64 array [new H / H, new W / W]).

    Raises:
      ValueError: for a non-positive `resize_factor` or an image not [H, W, 3].
    """
    # The original allowed 0, which asks PIL for a 0x0 image; refuse it clearly.
    if not resize_factor > 0:
        raise ValueError(f"resize_factor must be positive, got {resize_factor}")
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image has shape {list(image.shape)}, expected [H, W, 3]")
    height, width = image.shape[:2]
    largest = max(height, width)
    max_size = config.max_image_size * resize_factor
    min_size = config.min_image_size * resize_factor

    if max_size >= 0 and largest > max_size:
        factor = max_size / largest
    elif min_size >= 0 and largest < min_size:
        factor = min_size / largest
    elif config.use_square_images and height != width:
        factor = 1.0
    else:
        return image, np.ones(2, dtype=np.float64)

    if config.use_square_images:
        new_width = new_height = int(round(largest * factor))
    else:
        new_width, new_height = int(round(width * factor)), int(round(height * factor))
    resized = Image.fromarray(image).resize((new_width, new_height), resample=Image.BILINEAR)
    scale_factors = np.array([new_height / height, new_width / width], dtype=np.float64)
    return np.array(resized, dtype=np.uint8), scale_factors


def is_too_small(image: np.ndarray) -> bool:
    """True when the image's height or width is below MIN_IMAGE_SIZE (no features)."""
    return image.shape[0] < MIN_IMAGE_SIZE or image.shape[1] < MIN_IMAGE_SIZE


def normalize_pixel_values(
    image: np.ndarray, offset: float = 128.0, scale: float = 128.0
) -> np.ndarray:
    """(image - offset) / scale as float32; the defaults map uint8 to [-1, 1).

    Args:
      image: array of any shape.
      offset: subtracted first.
      scale: divided by next.

    Returns:
      float32 array of the same shape.
    """
    return ((np.asarray(image, np.float32) - np.float32(offset)) / np.float32(scale)).astype(
        np.float32
    )


def receptive_boxes(
    height: int, width: int, rf: float, stride: float, padding: float
) -> np.ndarray:
    """Receptive-field boxes of every cell of a feature map, in input-image pixels.

    Cell (i, j) has box stride·[i, j, i, j] + [-p, -p, -p + rf - 1, -p + rf - 1], in
    [ymin, xmin, ymax, xmax] order. Rows come in row-major cell order (j fastest), the
    order of a [height, width, D] feature map reshaped to [height·width, D].

    Args:
      height: feature-map height.
      width: feature-map width.
      rf: receptive-field size in pixels.
      stride: feature-map stride in pixels.
      padding: padding in pixels.

    Returns:
      float32 array [height·width, 4].
    """
    rows, cols = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
    corners = np.stack([rows, cols, rows, cols], axis=-1).reshape(-1, 4).astype(np.float32)
    offsets = np.array([-padding, -padding, -padding + rf - 1, -padding + rf - 1], np.float32)
    return corners * np.float32(stride) + offsets


def receptive_boxes_tf(
    height: tf.Tensor | int, width: tf.Tensor | int, rf: float, stride: float, padding: float
) -> tf.Tensor:
    """`receptive_boxes` as TensorFlow ops, for graphs where the map size is dynamic.

    TensorFlow is imported on first use only, so the rest of this module stays light.

    Args:
      height: feature-map height (scalar int tensor or int).
      width: feature-map width (scalar int tensor or int).
      rf: receptive-field size in pixels.
      stride: feature-map stride in pixels.
      padding: padding in pixels.

    Returns:
      float32 tensor [height·width, 4], rows as in `receptive_boxes`.
    """
    import tensorflow as tf

    rows, cols = tf.meshgrid(tf.range(height), tf.range(width), indexing="ij")
    corners = tf.reshape(tf.stack([rows, cols, rows, cols], axis=-1), [-1, 4])
    offsets = tf.constant(
        [-padding, -padding, -padding + rf - 1, -padding + rf - 1], dtype=tf.float32
    )
    return tf.cast(corners, tf.float32) * tf.cast(stride, tf.float32) + offsets


def box_centers(boxes: np.ndarray) -> np.ndarray:
    """Centres of [ymin, xmin, ymax, xmax] boxes.

    Args:
      boxes: [N, 4] array.

    Returns:
      [N, 2] array of (y, x) centres, float32 unless `boxes` is float64.
    """
    boxes = np.asarray(boxes)
    if not np.issubdtype(boxes.dtype, np.floating):
        boxes = boxes.astype(np.float32)
    return (boxes[:, :2] + boxes[:, 2:]) / 2
