"""delf_core.matching: putative matches, the vectorised RANSAC against skimage's, pictures."""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from skimage.measure import ransac
from skimage.transform import AffineTransform, ProjectiveTransform, warp

from delf_core.matching import (
    MatchConfig,
    draw_matches,
    match_features,
    matches_png,
    putative_matches,
    ransac_affine,
    read_image,
    write_png,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# y' = 0.9 y - 0.2 x + 30, x' = 0.15 y + 1.1 x - 12: rotation, shear, anisotropic scale.
TRUE_AFFINE = np.array([[0.9, -0.2, 30.0], [0.15, 1.1, -12.0], [0.0, 0.0, 1.0]])
GRID = np.stack(np.meshgrid(np.linspace(0, 600, 7), np.linspace(0, 600, 7)), -1).reshape(-1, 2)


def correspondences(
    num_points: int, inlier_ratio: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points mapped by TRUE_AFFINE with 1 px noise, plus outliers far from any fit.

    Every outlier lies more than 60 px from its true image, so the inlier set at a
    20 px threshold is unambiguous and both RANSACs must find exactly it.
    """
    rng = np.random.default_rng(seed)
    src = rng.uniform(0, 600, size=(num_points, 2))
    dst = src @ TRUE_AFFINE[:2, :2].T + TRUE_AFFINE[:2, 2]
    dst += rng.normal(scale=1.0, size=dst.shape)
    truth = np.arange(num_points) < round(inlier_ratio * num_points)
    for i in np.flatnonzero(~truth):
        while np.linalg.norm(dst[i] - src[i] @ TRUE_AFFINE[:2, :2].T - TRUE_AFFINE[:2, 2]) < 60:
            dst[i] = rng.uniform(0, 600, size=2)
    return src, dst, truth


def skimage_ransac(src, dst, seed):
    """skimage's RANSAC as the original calls it, and how many trials it ran."""
    trials = []

    def count_trial(*_):
        trials.append(1)
        return True

    model, inliers = ransac(
        (src, dst),
        AffineTransform,
        min_samples=3,
        residual_threshold=20,
        max_trials=1000,
        rng=seed,
        is_data_valid=count_trial,
    )
    return model, inliers, len(trials)


@pytest.mark.parametrize(("num_points", "inlier_ratio"), [(200, 0.3), (120, 0.5), (40, 0.9)])
def test_ransac_agrees_with_skimage(num_points, inlier_ratio):
    src, dst, truth = correspondences(num_points, inlier_ratio, seed=num_points)
    for seed in range(2):
        ours = ransac_affine(src, dst, residual_threshold=20, max_trials=1000, seed=seed)
        model, inliers, trials = skimage_ransac(src, dst, seed)
        np.testing.assert_array_equal(ours.inliers, truth)
        np.testing.assert_array_equal(inliers, truth)
        # The same dynamic trial count: 1000 at 30% inliers, fewer above.
        assert ours.num_trials == trials
        # Compared where the points are: the maps agree within a pixel or two.
        expected = GRID @ TRUE_AFFINE[:2, :2].T + TRUE_AFFINE[:2, 2]
        assert np.abs(ours.transform(GRID) - expected).max() < 2.0
        np.testing.assert_allclose(ours.model[:2, :2], TRUE_AFFINE[:2, :2], atol=0.01)
        # skimage refits by total least squares, we by ordinary: near-identical here.
        assert np.abs(ours.transform(GRID) - model(GRID)).max() < 0.5


def test_ransac_is_repeatable_and_seed_dependent():
    rng = np.random.default_rng(7)
    src = rng.uniform(0, 500, size=(300, 2))
    dst = rng.uniform(0, 500, size=(300, 2))  # no structure: the best model is luck
    first = ransac_affine(src, dst, seed=3)
    again = ransac_affine(src, dst, seed=3)
    np.testing.assert_array_equal(first.inliers, again.inliers)
    np.testing.assert_array_equal(first.model, again.model)
    others = {tuple(np.flatnonzero(ransac_affine(src, dst, seed=s).inliers)) for s in range(4)}
    assert len(others) > 1


def test_ransac_transform_maps_points():
    src, dst, truth = correspondences(100, 0.6, seed=1)
    result = ransac_affine(src, dst)
    error = np.linalg.norm(result.transform(src[truth]) - dst[truth], axis=1)
    assert np.median(error) < 2.0


@pytest.mark.parametrize("num_points", [0, 1, 2])
def test_ransac_with_fewer_than_three_points_finds_nothing(num_points):
    points = np.arange(num_points * 2, dtype=float).reshape(num_points, 2)
    result = ransac_affine(points, points)
    assert result.num_inliers == 0
    assert result.model is None
    assert result.inliers.shape == (num_points,)


def test_ransac_with_collinear_points_finds_no_model():
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0)], axis=1)
    result = ransac_affine(line, line + 5)
    assert result.num_inliers == 0
    assert result.model is None


def test_ransac_exact_three_points():
    src = np.array([[0.0, 0.0], [100.0, 0.0], [0.0, 100.0]])
    dst = src @ TRUE_AFFINE[:2, :2].T + TRUE_AFFINE[:2, 2]
    result = ransac_affine(src, dst)
    assert result.num_inliers == 3
    assert result.num_trials == 1  # skimage stops at once when every point agrees
    np.testing.assert_allclose(result.model, TRUE_AFFINE, atol=1e-9)


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    values = rng.normal(size=(rows, dim)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def test_putative_matches_are_nearest_neighbours_below_the_threshold():
    rng = np.random.default_rng(0)
    descriptors_1 = unit_rows(rng, 200, 40)
    descriptors_2 = unit_rows(rng, 150, 40)
    descriptors_2[:50] = descriptors_1[100:150] + 0.02 * unit_rows(rng, 50, 40)
    matches = putative_matches(descriptors_1, descriptors_2, distance_threshold=0.8)
    distances = np.linalg.norm(
        descriptors_2[:, None].astype(np.float64) - descriptors_1[None], axis=2
    )
    nearest = distances.argmin(axis=1)
    expected = np.flatnonzero(distances.min(axis=1) < 0.8)
    np.testing.assert_array_equal(matches.indices_2, expected)
    np.testing.assert_array_equal(matches.indices_1, nearest[expected])
    np.testing.assert_array_equal(matches.indices_1[:50], np.arange(100, 150))
    np.testing.assert_allclose(matches.distances, distances.min(axis=1)[expected], rtol=1e-6)


def test_putative_matches_equal_a_kd_tree_search_at_128_dimensions():
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(1)
    descriptors_1 = unit_rows(rng, 1000, 128)
    descriptors_2 = unit_rows(rng, 1500, 128)  # two blocks of the distance matrix
    descriptors_2[::3] = descriptors_1[:500] + 0.05 * unit_rows(rng, 500, 128)
    matches = putative_matches(descriptors_1, descriptors_2, distance_threshold=0.8)
    _, nearest = cKDTree(descriptors_1).query(descriptors_2, distance_upper_bound=0.8)
    kept = np.flatnonzero(nearest < len(descriptors_1))
    np.testing.assert_array_equal(matches.indices_2, kept)
    np.testing.assert_array_equal(matches.indices_1, nearest[kept])


def test_ratio_test_keeps_distinctive_matches_only():
    descriptors_1 = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0]])
    # Nearest 0.1 vs second 0.9: kept at ratio 0.5; 0.45 vs 0.55: dropped.
    descriptors_2 = np.array([[0.1, 0.0], [0.55, 0.0]])
    matches = putative_matches(descriptors_1, descriptors_2, 0.5, use_ratio_test=True)
    np.testing.assert_array_equal(matches.indices_2, [0])
    np.testing.assert_array_equal(matches.indices_1, [0])
    single = putative_matches(descriptors_1[:1], descriptors_2, 0.5, use_ratio_test=True)
    assert len(single) == 2  # no second neighbour: nothing to compare against


def test_putative_matches_threshold_is_exclusive_and_shared_neighbours_allowed():
    descriptors_1 = np.array([[0.0, 0.0], [10.0, 10.0]])
    descriptors_2 = np.array([[0.5, 0.0], [0.25, 0.0], [-0.25, 0.0]])
    matches = putative_matches(descriptors_1, descriptors_2, distance_threshold=0.5)
    np.testing.assert_array_equal(matches.indices_2, [1, 2])  # 0.5 is not below 0.5
    np.testing.assert_array_equal(matches.indices_1, [0, 0])  # no mutual check


def test_putative_matches_empty_and_mismatched():
    empty = putative_matches(np.zeros((0, 0)), np.ones((5, 40)))
    assert len(empty) == 0
    assert len(putative_matches(np.ones((5, 40)), np.zeros((0, 40)))) == 0
    with pytest.raises(ValueError, match="dimensions differ: 40 in image 1, 128 in image 2"):
        putative_matches(np.ones((5, 40)), np.ones((5, 128)))


class Features:
    def __init__(self, locations, descriptors):
        self.locations = locations
        self.descriptors = descriptors


def test_match_features_verifies_an_affine_pair():
    rng = np.random.default_rng(3)
    locations_1 = rng.uniform(0, 500, size=(300, 2)).astype(np.float32)
    descriptors_1 = unit_rows(rng, 300, 40)
    # Image 2: the first 80 features seen through TRUE_AFFINE, 40 matched to wrong
    # places, 180 unrelated.
    locations_2 = rng.uniform(0, 500, size=(300, 2)).astype(np.float32)
    locations_2[:80] = locations_1[:80] @ TRUE_AFFINE[:2, :2].T + TRUE_AFFINE[:2, 2]
    descriptors_2 = unit_rows(rng, 300, 40)
    descriptors_2[:120] = descriptors_1[:120] + 0.01 * unit_rows(rng, 120, 40)
    result = match_features(
        Features(locations_1, descriptors_1), Features(locations_2, descriptors_2)
    )
    assert result.num_matches == 120
    assert result.num_inliers == 80
    np.testing.assert_array_equal(np.flatnonzero(result.inliers), np.arange(80))
    np.testing.assert_allclose(result.locations_1, locations_1[:120])
    np.testing.assert_allclose(result.verification.model, TRUE_AFFINE, atol=1e-3)
    again = match_features(
        Features(locations_1, descriptors_1), Features(locations_2, descriptors_2)
    )
    np.testing.assert_array_equal(again.inliers, result.inliers)


def test_match_features_few_matches_and_bad_shapes():
    rng = np.random.default_rng(4)
    descriptors = unit_rows(rng, 2, 40)
    locations = np.zeros((2, 2), np.float32)
    result = match_features(Features(locations, descriptors), Features(locations, descriptors))
    assert (result.num_matches, result.num_inliers) == (2, 0)
    empty = Features(np.zeros((0, 2), np.float32), np.zeros((0, 0), np.float32))
    assert match_features(empty, Features(locations, descriptors)).num_inliers == 0
    with pytest.raises(ValueError, match="image 2: 2 locations but descriptors of shape"):
        match_features(Features(locations, descriptors), Features(locations, descriptors[:1]))
    with pytest.raises(ValueError, match=r"image 1: locations must be \[N, 2\]"):
        match_features(Features(np.zeros((2, 3)), descriptors), Features(locations, descriptors))


def test_match_config_defaults_are_the_originals():
    assert MatchConfig() == MatchConfig(0.8, 20.0, 1000, 3, 0)


def test_draw_matches_side_by_side_top_aligned():
    left = np.full((40, 60, 3), 100, np.uint8)
    right = np.full((70, 30), 50, np.uint8)  # grayscale is drawn as RGB
    locations_1 = np.array([[10.0, 10.0], [30.0, 50.0]])
    locations_2 = np.array([[10.0, 20.0], [60.0, 5.0]])
    picture = draw_matches(left, right, locations_1, locations_2, np.array([True, False]))
    assert picture.size == (90, 70) and picture.mode == "RGB"
    pixels = np.asarray(picture)
    assert (pixels[50:, :55] == 255).all()  # below the shorter left image: white
    assert tuple(pixels[10, 45]) == (0, 0, 255)  # the inlier's line, y=10 from x=10 to 80
    assert tuple(pixels[36, 53]) == (100, 100, 100)  # no line for the outlier
    assert tuple(pixels[60 - 2, 65]) == (0, 0, 0)  # a keypoint circle, radius 2


def test_png_bytes_and_files(tmp_path):
    left, right = np.zeros((20, 30, 3), np.uint8), np.zeros((25, 10, 3), np.uint8)
    data = matches_png(left, right, np.zeros((0, 2)), np.zeros((0, 2)))
    with Image.open(io.BytesIO(data)) as image:
        assert (image.format, image.size) == ("PNG", (40, 25))
    picture = draw_matches(left, right, np.zeros((0, 2)), np.zeros((0, 2)))
    for url in (str(tmp_path / "out" / "match.png"), "memory://matching-test/match.png"):
        write_png(url, picture)
        assert read_image(url).size == (40, 25)


def test_read_image_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_image(str(tmp_path / "missing.jpg"))
    (tmp_path / "not.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(ValueError, match="not.jpg: not an image PIL can read"):
        read_image(str(tmp_path / "not.jpg"))


def landmark(relative: str, side: int = 512) -> np.ndarray:
    """A photo of ../shared/data/landmarks as grayscale in [0, 1], longer side `side`."""
    path = DATA / "landmarks" / relative
    if not path.exists():
        pytest.skip(f"real photos not found: {path} (see shared/data/README.md)")
    with Image.open(path) as image:
        gray = image.convert("L")
        scale = side / max(gray.size)
        size = (round(gray.width * scale), round(gray.height * scale))
        return np.asarray(gray.resize(size, Image.Resampling.BILINEAR), np.float64) / 255


def sift_features(gray: np.ndarray) -> SimpleNamespace:
    """skimage SIFT as a stand-in local-feature source: (y, x) keypoints, unit descriptors."""
    from skimage.feature import SIFT

    detector = SIFT()
    detector.detect_and_extract(gray)
    descriptors = detector.descriptors.astype(np.float32)
    descriptors /= np.linalg.norm(descriptors, axis=1, keepdims=True)
    return SimpleNamespace(locations=detector.keypoints.astype(np.float32), descriptors=descriptors)


@pytest.fixture(scope="module")
def facade_and_warp():
    """The facade photo, and a view of it through a known homography (in x, y)."""
    image = landmark("facade/DSC_0410.jpg")
    height, width = image.shape
    angle, scale = np.deg2rad(10), 0.9
    about_centre = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
    view = np.array(
        [
            [scale * np.cos(angle), -scale * np.sin(angle), 0],
            [scale * np.sin(angle), scale * np.cos(angle), 0],
            [4e-4, 2e-4, 1],  # mild perspective
        ]
    )
    homography = ProjectiveTransform(np.linalg.inv(about_centre) @ view @ about_centre)
    warped = warp(image, homography.inverse, output_shape=image.shape, cval=1.0)
    return sift_features(image), sift_features(warped), homography


def test_real_photo_against_its_warp_and_another_building(facade_and_warp):
    facade, warped, homography = facade_and_warp
    same = match_features(facade, warped)
    # Measured: about 1400 of 1900 putative matches (SIFT, 512 px), across seeds.
    assert same.num_inliers > 1000
    xy_1 = same.locations_1[same.inliers][:, ::-1]
    xy_2 = same.locations_2[same.inliers][:, ::-1]
    error = np.linalg.norm(homography(xy_1) - xy_2, axis=1)
    # An affine model of a homography admits some 20 px residuals; most are sub-pixel.
    assert np.median(error) < 1.5
    assert np.mean(error < 3.0) > 0.9

    other = match_features(facade, sift_features(landmark("sacre_coeur/day_view.jpg")))
    # Measured: about 50 chance inliers between unrelated buildings.
    assert other.num_inliers < 150
    assert same.num_inliers > 10 * other.num_inliers
