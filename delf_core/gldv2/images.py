"""Checking image bytes before they enter a TFRecord: decodable, RGB-compatible JPEG."""

from __future__ import annotations

import dataclasses
import io
import struct

from PIL import Image, JpegImagePlugin, UnidentifiedImageError

_JPEG_MAGIC = b"\xff\xd8\xff"
# JPEG colour modes every reader handles; CMYK and friends get re-encoded.
_PLAIN_JPEG_MODES = {"RGB", "L"}
REENCODE_QUALITY = 95

# PIL's own warning threshold (about 9459 x 9459). GLDv2 images are mostly at most 800 px
# on a side, so only rare huge originals exceed it, while one decode stays under ~270 MB
# of RGB pixels and about a second; a few-hundred-byte file claiming more is a bomb.
DEFAULT_MAX_PIXELS = 89_478_485
# PIL refuses to open anything larger than twice its threshold, whatever we allow.
MAX_PIXELS_CEILING = 2 * DEFAULT_MAX_PIXELS

# Problems, as they appear in the build report.
MISSING = "missing"
UNREADABLE = "unreadable"
REENCODED = "reencoded"
TOO_LARGE = "too_large"


class BadImageError(ValueError):
    """The bytes are not an image any decoder here can read."""


class ImageTooLargeError(BadImageError):
    """The header claims more pixels than allowed: the image is left out before decoding."""


@dataclasses.dataclass(frozen=True)
class CheckedImage:
    """JPEG bytes that `tf.io.decode_jpeg(..., channels=3)` decodes, and their size."""

    encoded: bytes
    height: int
    width: int
    reencoded: bool


def check_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> CheckedImage:
    """Returns the bytes unchanged when they are a plain JPEG TensorFlow decodes.

    The size is read from the header first, so an image over `max_pixels` costs no
    decode. An image that is readable but odd (CMYK JPEG, PNG or GIF under a .jpg
    name) is re-encoded to an RGB JPEG, so every reader of the records gets what
    `image/format` says.

    Args:
      data: the file's bytes.
      max_pixels: the most pixels (width x height) an image may have.

    Raises:
      ImageTooLargeError: when the header claims more than `max_pixels` pixels.
      BadImageError: for truncated, corrupt or non-image bytes.
    """
    header = _jpeg_header(data) if data.startswith(_JPEG_MAGIC) else None
    if header is not None:
        mode, width, height = header
        _check_pixels(width, height, max_pixels)
        if mode in _PLAIN_JPEG_MODES:
            return CheckedImage(data, *_decoded_size(data, max_pixels), reencoded=False)
    data = _reencode(data, max_pixels)
    return CheckedImage(data, *_decoded_size(data, max_pixels), reencoded=True)


def _check_pixels(width: int, height: int, max_pixels: int) -> None:
    if width * height > max_pixels:
        raise ImageTooLargeError(
            f"{width}x{height} is {width * height} pixels, over --max_image_pixels={max_pixels}"
        )


def _jpeg_header(data: bytes) -> tuple[str, int, int] | None:
    """(mode, width, height) from a JPEG's header, None when PIL cannot read it.

    No pixel is decoded. The JPEG plugin is used directly, not `Image.open`, whose own
    bomb check warns and then fails with no size: the limit here is `max_pixels`.
    """
    try:
        with JpegImagePlugin.JpegImageFile(io.BytesIO(data)) as image:
            return image.mode, image.width, image.height
    except (SyntaxError, OSError, ValueError, IndexError, TypeError, EOFError, struct.error):
        return None  # what Image.open reads as "not an image" of this format


def _reencode(data: bytes, max_pixels: int) -> bytes:
    """Any image PIL reads, as an RGB JPEG; its header's size is checked before decoding."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_pixels(image.width, image.height, max_pixels)
            rgb = image.convert("RGB")
    except Image.DecompressionBombError as error:
        # Over PIL's own limit (or, in an animation, one frame over it).
        raise ImageTooLargeError(str(error).split(",")[0]) from None
    except BadImageError:
        raise
    except (UnidentifiedImageError, OSError, ValueError) as error:
        raise BadImageError(f"not a readable image: {error}") from None
    out = io.BytesIO()
    rgb.save(out, "JPEG", quality=REENCODE_QUALITY)
    return out.getvalue()


def _decoded_size(data: bytes, max_pixels: int) -> tuple[int, int]:
    """Decodes as the training reader will; truncated, corrupt or oversized data raises.

    The size is checked again by TensorFlow's own header reader (no decode): that
    decoder, not PIL, is the one that allocates the pixels.
    """
    import tensorflow as tf

    try:
        height, width, _ = (int(v) for v in tf.image.extract_jpeg_shape(data).numpy())
        _check_pixels(width, height, max_pixels)
        shape = tf.io.decode_jpeg(data, channels=3).shape
    except tf.errors.InvalidArgumentError as error:
        message = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise BadImageError(f"does not decode: {message[-120:]}") from None
    return int(shape[0]), int(shape[1])
