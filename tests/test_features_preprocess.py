"""Image loading, resizing and the small array helpers of extraction (REFERENCE §6.2, §6.3)."""

import io

import numpy as np
import pytest
from PIL import Image, ImageFile

from delf_core.features import (
    MIN_IMAGE_SIZE,
    box_centers,
    decode_rgb,
    is_too_small,
    load_rgb,
    normalize_pixel_values,
    receptive_boxes,
    receptive_boxes_tf,
    resize_image,
)
from delf_core.features.protos import delf_config_pb2


def _config(max_size=-1, min_size=-1, square=False):
    return delf_config_pb2.DelfConfig(
        max_image_size=max_size, min_image_size=min_size, use_square_images=square
    )


# (max, min, square, resize_factor, expected [H, W], expected scale factors) on a 4x2 image.
RESIZE_CASES = [
    (-1, -1, False, 1.0, [4, 2], [1, 1]),
    (-1, -1, True, 1.0, [4, 4], [1, 2]),
    (2, -1, False, 1.0, [2, 1], [0.5, 0.5]),
    (2, -1, True, 1.0, [2, 2], [0.5, 1]),
    (8, -1, False, 1.0, [4, 2], [1, 1]),
    (-1, 8, False, 1.0, [8, 4], [2, 2]),
    (-1, 8, True, 1.0, [8, 8], [2, 4]),
    (16, 8, False, 1.0, [8, 4], [2, 2]),
    (2, 2, False, 1.0, [2, 1], [0.5, 0.5]),
    # resize_factor scales the bounds.
    (2, -1, False, 2.0, [4, 2], [1, 1]),
    (-1, 8, False, 0.5, [4, 2], [1, 1]),
    (8, -1, False, 0.25, [2, 1], [0.5, 0.5]),
    (8, -1, True, 0.25, [2, 2], [0.5, 1]),
    (-1, 4, False, 2.0, [8, 4], [2, 2]),
    (-1, 4, True, 2.0, [8, 8], [2, 4]),
    (-1, 8, False, 0.25, [4, 2], [1, 1]),
    (16, 8, False, 0.5, [4, 2], [1, 1]),
]


@pytest.mark.parametrize(
    ("max_size", "min_size", "square", "factor", "shape", "scales"), RESIZE_CASES
)
def test_resize_image(max_size, min_size, square, factor, shape, scales):
    image = np.arange(24, dtype=np.uint8).reshape(4, 2, 3)
    resized, scale_factors = resize_image(image, _config(max_size, min_size, square), factor)
    assert list(resized.shape) == [*shape, 3]
    assert resized.dtype == np.uint8
    np.testing.assert_allclose(scale_factors, scales)
    if shape == [4, 2]:
        np.testing.assert_array_equal(resized, image)


@pytest.mark.parametrize(
    ("square", "shape", "scales"), [(False, [2, 1], [2 / 3, 0.5]), (True, [2, 2], [2 / 3, 1.0])]
)
def test_resize_rounding(square, shape, scales):
    image = np.zeros((3, 2, 3), np.uint8)
    resized, scale_factors = resize_image(image, _config(2, 2, square))
    assert list(resized.shape) == [*shape, 3]
    np.testing.assert_allclose(scale_factors, scales, rtol=1e-6)


def test_resize_matches_pil_bilinear():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 20, 3), dtype=np.uint8)
    resized, _ = resize_image(image, _config(max_size=15))
    expected = np.array(Image.fromarray(image).resize((10, 15), resample=Image.BILINEAR))
    np.testing.assert_array_equal(resized, expected)


def test_resize_rejects_bad_input():
    with pytest.raises(ValueError, match="resize_factor"):
        resize_image(np.zeros((4, 2, 3), np.uint8), _config(), 0.0)
    with pytest.raises(ValueError, match=r"\[4, 2\]"):
        resize_image(np.zeros((4, 2), np.uint8), _config())


def test_is_too_small():
    assert MIN_IMAGE_SIZE == 10
    assert is_too_small(np.zeros((9, 100, 3)))
    assert is_too_small(np.zeros((100, 9, 3)))
    assert not is_too_small(np.zeros((10, 10, 3)))


def test_normalize_pixel_values():
    image = np.array([[[3, 255, 0], [34, 12, 5]], [[45, 5, 65], [56, 77, 89]]], np.uint8)
    out = normalize_pixel_values(image, offset=5.0, scale=2.0)
    expected = [[[-1, 125, -2.5], [14.5, 3.5, 0]], [[20, 0, 30], [25.5, 36, 42]]]
    np.testing.assert_allclose(out, expected)
    assert out.dtype == np.float32
    np.testing.assert_allclose(normalize_pixel_values(np.array([0, 128, 255])), [-1, 0, 127 / 128])


def test_receptive_boxes():
    boxes = receptive_boxes(1, 2, rf=291, stride=32, padding=145)
    np.testing.assert_array_equal(boxes, [[-145, -145, 145, 145], [-145, -113, 145, 177]])
    assert boxes.dtype == np.float32
    # Row-major cell order: cell (i, j) is row i * width + j; its centre is stride * (i, j).
    boxes = receptive_boxes(3, 4, rf=291, stride=16, padding=145)
    np.testing.assert_array_equal(box_centers(boxes)[1 * 4 + 2], [16, 32])


def test_receptive_boxes_tf_matches_numpy():
    tf = pytest.importorskip("tensorflow")
    tf_boxes = receptive_boxes_tf(tf.constant(3), tf.constant(5), 291.0, 32.0, 145.0)
    np.testing.assert_array_equal(tf_boxes.numpy(), receptive_boxes(3, 5, 291, 32, 145))


def test_box_centers():
    boxes = np.array([[-10, 0, 11, 21], [-2.5, 5, 18.5, 26], [45, -2.5, 66, 18.5]], np.float32)
    np.testing.assert_allclose(box_centers(boxes), [[0.5, 10.5], [8, 15.5], [55.5, 8]])
    assert box_centers(np.array([[0, 0, 3, 3]])).dtype == np.float32


# --- loading -----------------------------------------------------------------------


def _encoded(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def test_load_cmyk_jpeg_as_rgb(tmp_path):
    path = tmp_path / "cmyk.jpg"
    path.write_bytes(_encoded(Image.new("CMYK", (8, 6), (0, 255, 255, 0)), "JPEG"))
    image = load_rgb(str(path))
    assert image.shape == (6, 8, 3) and image.dtype == np.uint8
    assert image[..., 0].mean() > 200 and image[..., 1].mean() < 60  # red


def test_load_png_with_alpha(tmp_path):
    path = tmp_path / "rgba.png"
    path.write_bytes(_encoded(Image.new("RGBA", (5, 7), (10, 20, 30, 128)), "PNG"))
    image = load_rgb(str(path))
    assert image.shape == (7, 5, 3)
    np.testing.assert_array_equal(image[0, 0], [10, 20, 30])


def test_truncated_jpeg_loads_and_leaves_pil_setting_alone(tmp_path):
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    data = _encoded(Image.fromarray(pixels), "JPEG")
    path = tmp_path / "cut.jpg"
    path.write_bytes(data[: len(data) // 2])
    before = ImageFile.LOAD_TRUNCATED_IMAGES
    assert load_rgb(str(path)).shape == (64, 64, 3)
    assert before == ImageFile.LOAD_TRUNCATED_IMAGES


def test_unreadable_image_names_the_path(tmp_path):
    path = tmp_path / "not_an_image.jpg"
    path.write_bytes(b"hello")
    with pytest.raises(ValueError, match=r"not_an_image\.jpg: not a readable image"):
        load_rgb(str(path))


def test_load_from_fsspec_url():
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/preprocess-test/img.png", _encoded(Image.new("L", (3, 2), 7), "PNG"))
    image = load_rgb("memory://preprocess-test/img.png")
    assert image.shape == (2, 3, 3) and (image == 7).all()
    np.testing.assert_array_equal(decode_rgb(_encoded(Image.new("L", (3, 2), 7), "PNG")), image)
