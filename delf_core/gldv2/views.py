"""Synthetic camera views of a photo region (homography, rotation, scale, lighting, JPEG)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import io
import math
import os

import numpy as np
from PIL import Image

# A region of a photo as (left, top, right, bottom) in pixel-edge coordinates.
Box = tuple[float, float, float, float]


@dataclasses.dataclass(frozen=True)
class SourcePhoto:
    """A photograph shipped inside an installed package, with its attribution."""

    name: str
    package: str  # the installed package that ships the file
    relpath: str  # the file inside that package
    title: str
    author: str
    license: str
    url: str  # where the package's authors got it

    def path(self) -> str:
        """The file's local path, found without importing the package (sklearn is slow)."""
        spec = importlib.util.find_spec(self.package)
        if spec is None or not spec.submodule_search_locations:
            raise FileNotFoundError(f"package {self.package!r} is not installed")
        return os.path.join(list(spec.submodule_search_locations)[0], self.relpath)


_SKIMAGE = "skimage"
_SKLEARN = "sklearn"
_CC0 = "CC0 1.0"
_PD = "Public domain"
_CC_BY = "CC BY 2.0"

# Photos with structure that stays recognisable under a homography: the "landmarks".
LANDMARK_PHOTOS: tuple[SourcePhoto, ...] = (
    SourcePhoto(
        "china", _SKLEARN, "datasets/images/china.jpg", "Temple in China", "danielbuechele",
        _CC_BY, "https://www.flickr.com/photos/danielbuechele/6061409035/",
    ),
    SourcePhoto(
        "flower", _SKLEARN, "datasets/images/flower.jpg", "Flower", "vultilion", _CC_BY,
        "https://www.flickr.com/photos/vultilion/6056698931/",
    ),
    SourcePhoto(
        "astronaut", _SKIMAGE, "data/astronaut.png", "Astronaut Eileen Collins", "NASA", _PD,
        "https://flic.kr/p/r9qvLn",
    ),
    SourcePhoto(
        "coffee", _SKIMAGE, "data/coffee.png", "Coffee cup, Pikolo Espresso Bar",
        "Rachel Michetti", _CC0, "https://scikit-image.org/docs/stable/api/skimage.data.html",
    ),
    SourcePhoto(
        "chelsea", _SKIMAGE, "data/chelsea.png", "Chelsea the cat", "Stefan van der Walt", _CC0,
        "https://scikit-image.org/docs/stable/api/skimage.data.html",
    ),
    SourcePhoto(
        "rocket", _SKIMAGE, "data/rocket.jpg", "Launch of DSCOVR on Falcon 9", "SpaceX", _PD,
        "https://www.flickr.com/photos/spacexphotos/16511594820/",
    ),
    SourcePhoto(
        "hubble_deep_field", _SKIMAGE, "data/hubble_deep_field.jpg",
        "Hubble eXtreme Deep Field", "NASA", _PD,
        "http://hubblesite.org/newscenter/archive/releases/2012/37/image/a/",
    ),
    SourcePhoto(
        "retina", _SKIMAGE, "data/retina.jpg", "Fundus photograph of normal left eye",
        "Mikael Häggström", _CC0,
        "https://commons.wikimedia.org/wiki/File:Fundus_photograph_of_normal_left_eye.jpg",
    ),
    SourcePhoto(
        "camera", _SKIMAGE, "data/camera.png", "Cameraman", "Lav Varshney", _CC0,
        "https://github.com/scikit-image/scikit-image/issues/3927",
    ),
)  # fmt: skip

# Textures and objects that are not places: noisy train images and test distractors.
CLUTTER_PHOTOS: tuple[SourcePhoto, ...] = (
    SourcePhoto(
        "brick", _SKIMAGE, "data/brick.png", "Brick wall", "CC0Textures", _CC0,
        "https://cc0textures.com/view.php?tex=Bricks25",
    ),
    SourcePhoto(
        "grass", _SKIMAGE, "data/grass.png", "Grass", "linolafett", _CC0,
        "https://www.deviantart.com/linolafett/art/Grass-01-434853879",
    ),
    SourcePhoto(
        "gravel", _SKIMAGE, "data/gravel.png", "Gravel", "CC0Textures", _CC0,
        "https://cc0textures.com/view.php?tex=Gravel04",
    ),
    SourcePhoto(
        "coins", _SKIMAGE, "data/coins.png", "Greek coins from Pompeii", "Brooklyn Museum", _PD,
        "https://www.brooklynmuseum.org/opencollection/archives/image/51611",
    ),
    SourcePhoto(
        "text", _SKIMAGE, "data/text.png", "Corner", "Wikipedia", _PD,
        "https://en.wikipedia.org/wiki/File:Corner.png",
    ),
)  # fmt: skip


@functools.lru_cache(maxsize=32)
def load_photo(photo: SourcePhoto) -> Image.Image:
    """The photo as an RGB image (grayscale ones get three equal channels).

    Cached: callers must not modify the returned image in place.
    """
    with Image.open(photo.path()) as image:
        return image.convert("RGB")


@dataclasses.dataclass(frozen=True)
class ViewConfig:
    """How far one synthetic view may depart from the landmark region it shows."""

    min_size: int = 160  # longest side of the output, pixels
    max_size: int = 320
    max_corner_shift: float = 0.15  # per corner, as a fraction of the region's side
    max_rotation_degrees: float = 20.0
    max_zoom_change: float = 0.15  # the region grows or shrinks by up to this factor
    max_brightness_change: float = 0.25
    max_contrast_change: float = 0.25
    max_gamma_change: float = 0.25
    min_jpeg_quality: int = 60
    max_jpeg_quality: int = 95


def fit_homography(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 3x3 homography H (H[2, 2] = 1) with H @ [x, y, 1] ~ [u, v, 1] for 4 point pairs.

    Args:
      src: (4, 2) points (x, y).
      dst: (4, 2) points (u, v) they map to.

    Returns:
      The (3, 3) float64 matrix.

    Raises:
      ValueError: when three of the points are collinear, so no unique H exists.
    """
    src = np.asarray(src, dtype=np.float64).reshape(4, 2)
    dst = np.asarray(dst, dtype=np.float64).reshape(4, 2)
    a = np.zeros((8, 8))
    b = dst.reshape(8)
    for i, ((x, y), (u, v)) in enumerate(zip(src, dst, strict=True)):
        # u * (g x + h y + 1) = a x + b y + c, linear in the 8 unknowns; same for v.
        a[2 * i] = (x, y, 1.0, 0.0, 0.0, 0.0, -u * x, -u * y)
        a[2 * i + 1] = (0.0, 0.0, 0.0, x, y, 1.0, -v * x, -v * y)
    try:
        h = np.linalg.solve(a, b)
    except np.linalg.LinAlgError as error:
        raise ValueError(f"degenerate point correspondences: {src.tolist()}") from error
    return np.append(h, 1.0).reshape(3, 3)


def apply_homography(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Maps (N, 2) points through a 3x3 homography."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    mapped = np.hstack([points, np.ones((len(points), 1))]) @ np.asarray(matrix).T
    return mapped[:, :2] / mapped[:, 2:3]


def sample_region(
    rng: np.random.Generator, width: int, height: int, min_fraction: float, max_fraction: float
) -> Box:
    """A random box whose sides are min..max_fraction of the photo's, inside the photo."""
    w = width * rng.uniform(min_fraction, max_fraction)
    h = height * rng.uniform(min_fraction, max_fraction)
    left = rng.uniform(0.0, width - w)
    top = rng.uniform(0.0, height - h)
    return (float(left), float(top), float(left + w), float(top + h))


def view_quad(
    region: Box, width: int, height: int, rng: np.random.Generator, config: ViewConfig
) -> np.ndarray:
    """The quadrilateral of the photo that one view shows: the region, moved like a camera.

    Corners are clockwise from the top left. Each corner moves independently (a
    perspective change), then the whole quad turns and zooms about its centre; a quad
    that leaves the photo shrinks towards its centre so that no view has empty borders.

    Returns:
      (4, 2) corner coordinates in the photo.
    """
    left, top, right, bottom = region
    w, h = right - left, bottom - top
    corners = np.array([[left, top], [right, top], [right, bottom], [left, bottom]])
    shift = config.max_corner_shift
    corners = corners + rng.uniform(-shift, shift, size=(4, 2)) * (w, h)
    centre = corners.mean(axis=0)
    angle = math.radians(rng.uniform(-config.max_rotation_degrees, config.max_rotation_degrees))
    log_zoom = math.log1p(config.max_zoom_change)
    zoom = math.exp(rng.uniform(-log_zoom, log_zoom))
    cos, sin = math.cos(angle), math.sin(angle)
    rotation = np.array([[cos, -sin], [sin, cos]])
    offsets = zoom * (corners - centre) @ rotation.T
    # The largest factor in (0, 1] that keeps every corner inside [0, width] x [0, height].
    limits = np.array([width, height], dtype=np.float64)
    scale = 1.0
    for offset in offsets:
        for axis in (0, 1):
            if offset[axis] > 0:
                scale = min(scale, (limits[axis] - centre[axis]) / offset[axis])
            elif offset[axis] < 0:
                scale = min(scale, -centre[axis] / offset[axis])
    return centre + scale * offsets


def warp_quad(image: Image.Image, quad: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """Resamples `quad` of `image` onto a `size` = (width, height) rectangle.

    PIL's perspective transform does not low-pass filter, so a quad much larger than the
    output is first cropped and downscaled with Lanczos; otherwise views of big photos
    (retina is 1411 px) would alias.
    """
    out_w, out_h = size
    quad = np.asarray(quad, dtype=np.float64)
    x0, y0 = np.floor(quad.min(axis=0)).astype(int)
    x1, y1 = np.ceil(quad.max(axis=0)).astype(int)
    x0, y0 = max(int(x0), 0), max(int(y0), 0)
    x1, y1 = min(int(x1), image.width), min(int(y1), image.height)
    patch = image.crop((x0, y0, x1, y1))
    local = quad - (x0, y0)
    edges = np.linalg.norm(np.roll(quad, -1, axis=0) - quad, axis=1)
    factor = min((edges[0] + edges[2]) / 2 / out_w, (edges[1] + edges[3]) / 2 / out_h)
    if factor > 1.5:
        new_w = max(1, round(patch.width / factor))
        new_h = max(1, round(patch.height / factor))
        local = local * (new_w / patch.width, new_h / patch.height)
        patch = patch.resize((new_w, new_h), Image.Resampling.LANCZOS)
    out_corners = np.array([[0, 0], [out_w, 0], [out_w, out_h], [0, out_h]], dtype=np.float64)
    # PIL wants the map from output pixels to input pixels.
    coeffs = fit_homography(out_corners, local).reshape(9)[:8]
    return patch.transform(
        (out_w, out_h),
        Image.Transform.PERSPECTIVE,
        tuple(float(c) for c in coeffs),
        Image.Resampling.BICUBIC,
    )


def adjust_lighting(
    image: Image.Image, rng: np.random.Generator, config: ViewConfig
) -> Image.Image:
    """Random contrast (about the mean), brightness and gamma, as exposure and weather do."""
    contrast = rng.uniform(1 - config.max_contrast_change, 1 + config.max_contrast_change)
    brightness = rng.uniform(1 - config.max_brightness_change, 1 + config.max_brightness_change)
    log_gamma = math.log1p(config.max_gamma_change)
    gamma = math.exp(rng.uniform(-log_gamma, log_gamma))
    pixels = np.asarray(image, dtype=np.float32) / 255.0
    mean = float(pixels.mean())
    pixels = ((pixels - mean) * contrast + mean) * brightness
    pixels = np.clip(pixels, 0.0, 1.0) ** gamma
    return Image.fromarray(np.round(pixels * 255.0).astype(np.uint8))


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """JPEG bytes with no EXIF or timestamps, so equal pixels give equal bytes."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=int(quality))
    return buffer.getvalue()


def make_view(
    image: Image.Image, region: Box, rng: np.random.Generator, config: ViewConfig
) -> bytes:
    """One synthetic photo of `region` of `image`, as JPEG bytes.

    Args:
      image: the RGB source photo.
      region: the landmark's box in it.
      rng: the only source of randomness, so a seeded generator gives the same bytes.
      config: the ranges of the random changes.

    Returns:
      The encoded JPEG.
    """
    quad = view_quad(region, image.width, image.height, rng, config)
    longest = int(rng.integers(config.min_size, config.max_size + 1))
    w, h = region[2] - region[0], region[3] - region[1]
    if w >= h:
        size = (longest, max(1, round(longest * h / w)))
    else:
        size = (max(1, round(longest * w / h)), longest)
    view = adjust_lighting(warp_quad(image, quad, size), rng, config)
    quality = int(rng.integers(config.min_jpeg_quality, config.max_jpeg_quality + 1))
    return encode_jpeg(view, quality)
