"""The match picture: two images side by side, inlier correspondences as lines."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw, UnidentifiedImageError

from delf_core import storage

# The original's colours: matplotlib 'k' keypoint circles and 'b' match lines.
_KEYPOINT_COLOR = (0, 0, 0)
_LINE_COLOR = (0, 0, 255)
_BACKGROUND = (255, 255, 255)


def read_image(url: str) -> Image.Image:
    """An RGB image from a local path or any fsspec URL (gs://, memory://).

    Raises:
        FileNotFoundError: there is no such file.
        ValueError: naming `url` when the file is not an image PIL can decode.
    """
    fs, path = storage.resolve(url)
    with fs.open(path, "rb") as handle:
        data = handle.read()
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.convert("RGB")
    except UnidentifiedImageError as error:
        raise ValueError(f"{url}: not an image PIL can read") from error
    except (OSError, Image.DecompressionBombError) as error:  # truncated, corrupt, huge
        raise ValueError(f"{url}: cannot decode the image ({error})") from error


def draw_matches(
    image_1: Image.Image | np.ndarray,
    image_2: Image.Image | np.ndarray,
    locations_1: np.ndarray,
    locations_2: np.ndarray,
    inliers: np.ndarray | None = None,
) -> Image.Image:
    """Draws two images side by side with their correspondences, as plot_matches does.

    The images are top-aligned on a white canvas as wide as both and as tall as the
    taller; every match's two locations get a circle, and the inliers a line.

    Args:
        image_1: the left image (PIL image or uint8 array).
        image_2: the right image.
        locations_1: [M, 2] (y, x) pixel locations in image 1.
        locations_2: [M, 2] (y, x) pixel locations in image 2, row i matching row i.
        inliers: [M] bool mask of the matches to join by a line; all when None.

    Returns:
        An RGB image of size (width_1 + width_2, max(height_1, height_2)).
    """
    left, right = _rgb(image_1), _rgb(image_2)
    canvas = Image.new("RGB", (left.width + right.width, max(left.height, right.height)))
    canvas.paste(_BACKGROUND, (0, 0, canvas.width, canvas.height))
    canvas.paste(left, (0, 0))
    canvas.paste(right, (left.width, 0))

    points_1 = np.asarray(locations_1, dtype=np.float64).reshape(-1, 2)[:, ::-1]
    points_2 = np.asarray(locations_2, dtype=np.float64).reshape(-1, 2)[:, ::-1]
    points_2 = points_2 + (left.width, 0)
    if inliers is None:
        inliers = np.ones(len(points_1), dtype=bool)
    # Marks grow with the picture so they stay visible on large photos.
    radius = max(2, round(max(canvas.size) / 400))
    width = max(1, round(max(canvas.size) / 1000))
    draw = ImageDraw.Draw(canvas)
    for (x1, y1), (x2, y2) in zip(points_1[inliers], points_2[inliers], strict=True):
        draw.line([(x1, y1), (x2, y2)], fill=_LINE_COLOR, width=width)
    for x, y in np.concatenate([points_1, points_2]):
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], outline=_KEYPOINT_COLOR)
    return canvas


def encode_png(image: Image.Image) -> bytes:
    """The image as PNG bytes (for a file or a Prefect artifact)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def matches_png(
    image_1: Image.Image | np.ndarray,
    image_2: Image.Image | np.ndarray,
    locations_1: np.ndarray,
    locations_2: np.ndarray,
    inliers: np.ndarray | None = None,
) -> bytes:
    """`draw_matches` encoded as PNG bytes."""
    return encode_png(draw_matches(image_1, image_2, locations_1, locations_2, inliers))


def write_png(url: str, image: Image.Image) -> None:
    """Writes the image as PNG to a local path or fsspec URL, whole or not at all."""
    fs, path = storage.resolve(url)
    storage.write_bytes(fs, path, encode_png(image))


def _rgb(image: Image.Image | np.ndarray) -> Image.Image:
    if isinstance(image, np.ndarray):
        image = Image.fromarray(np.asarray(image, dtype=np.uint8))
    return image if image.mode == "RGB" else image.convert("RGB")
