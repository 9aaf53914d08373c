"""Checking image bytes before they enter a TFRecord: decodable, RGB-compatible JPEG."""

from __future__ import annotations

import dataclasses
import io

from PIL import Image, UnidentifiedImageError

_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour modes every reader handles; CMYK and friends get re-encoded.
_PLAIN_JPEG_MODES = {"RGB", "L"}
REENCODE_QUALITY = 95

# Problems, as they appear in the build report.
MISSING = "missing"
UNREADABLE = "unreadable"
REENCODED = "reencoded"


class BadImageError(ValueError):
    """The bytes are not an image any decoder here can read."""


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    """JPEG bytes that `tf.io.decode_jpeg(..., channels=3)` decodes, and their size."""

    encoded: bytes
    height: int
    width: int
    reencoded: bool


def check_image(data: bytes) -> CheckedImage:
    """Returns the bytes unchanged when they are a plain JPEG TensorFlow decodes.

    An image that is readable but odd (CMYK JPEG, PNG or GIF under a .jpg name) is
    re-encoded to an RGB JPEG, so every reader of the records gets what `image/format`
    says.

    Raises:
      BadImageError: for truncated, corrupt or non-image bytes.
    """
    reencoded = False
    if not (data.startswith(_JPEG_MAGIC) and _mode(data) in _PLAIN_JPEG_MODES):
        data = _reencode(data)
        reencoded = True
    height, width = _decoded_size(data)
    return CheckedImage(data, height, width, reencoded)


def _mode(data: bytes) -> str | None:
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.mode
    except (UnidentifiedImageError, OSError):
        return None


def _reencode(data: bytes) -> bytes:
    try:
        with Image.open(io.BytesIO(data)) as image:
            rgb = image.convert("RGB")
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise BadImageError(f"not a readable image: {error}") from None
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=REENCODE_QUALITY)
    return out.getvalue()


def _decoded_size(data: bytes) -> tuple[int, int]:
    """Decodes as the training reader will; truncated or corrupt data raises."""
    import tensorflow as tf

    try:
        shape = tf.io.decode_jpeg(data, channels=3).shape
    except tf.errors.InvalidArgumentError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadImageError(f"does not decode: {message[-120:]}") from None
    return int(shape[0]), int(shape[1])
