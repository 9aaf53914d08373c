"""`delf match_images` as users run it: the seed's command, real .delf files, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from delf_cli.main import main
from delf_core.features.feature_io import read_from_file, write_to_file
from delf_core.matching import match_features, read_image

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# The seed README's command, flag for flag.
SEED_COMMAND = [
    "match_images",
    "--image_1_path",
    "data/oxford5k_images/hertford_000056.jpg",
    "--image_2_path",
    "data/oxford5k_images/oxford_000317.jpg",
    "--features_1_path",
    "data/oxford5k_features/hertford_000056.delf",
    "--features_2_path",
    "data/oxford5k_features/oxford_000317.delf",
    "--output_image",
    "matched_images.png",
]
# Image 1 is 120x90 (w x h), image 2 100x140; (y, x) -> (1.2 y + 0.1 x + 10, 0.7 x + 5).
AFFINE = np.array([[1.2, 0.1, 10.0], [0.0, 0.7, 5.0]])


def write_image(path: Path, width: int, height: int, seed: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    values = rng.normal(size=(rows, dim)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def write_features(path: Path, locations: np.ndarray, descriptors: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    n = len(locations)
    write_to_file(str(path), locations, np.ones(n), descriptors, np.full(n, 200.0))


def write_pair(root: Path, num_true: int = 25, num_wrong: int = 10, num_other: int = 15) -> None:
    """The seed command's four inputs: `num_true` matches obey AFFINE, `num_wrong` match
    descriptors at places more than 20 px off it, `num_other` match nothing."""
    rng = np.random.default_rng(0)
    total = num_true + num_wrong + num_other
    locations_1 = rng.uniform((0, 0), (90, 120), size=(total, 2)).astype(np.float32)
    descriptors_1 = unit_rows(rng, total, 40)
    locations_2 = locations_1 @ AFFINE[:, :2].T + AFFINE[:, 2]
    for i in range(num_true, total):
        while np.linalg.norm(locations_2[i] - locations_1[i] @ AFFINE[:, :2].T - AFFINE[:, 2]) < 40:
            locations_2[i] = rng.uniform((0, 0), (140, 100))
    descriptors_2 = descriptors_1.copy()
    descriptors_2[num_true + num_wrong :] = unit_rows(rng, num_other, 40)
    order = rng.permutation(total)  # file order carries no meaning
    images, features = root / "data" / "oxford5k_images", root / "data" / "oxford5k_features"
    write_image(images / "hertford_000056.jpg", 120, 90, seed=1)
    write_image(images / "oxford_000317.jpg", 100, 140, seed=2)
    write_features(features / "hertford_000056.delf", locations_1, descriptors_1)
    write_features(features / "oxford_000317.delf", locations_2[order], descriptors_2[order])


@pytest.fixture()
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_pair(tmp_path)
    return tmp_path


def test_seed_command_prints_the_inliers_and_draws_them(workdir, capsys):
    assert main(SEED_COMMAND) == 0
    out = capsys.readouterr().out
    assert "Loaded image 1's 50 features" in out
    assert "Loaded image 2's 50 features" in out
    assert "Found 25 inliers" in out
    with Image.open(workdir / "matched_images.png") as picture:
        assert picture.format == "PNG"
        assert picture.size == (120 + 100, 140)


def test_equals_form_seed_and_url_output(workdir, capsys):
    pairs = zip(SEED_COMMAND[1:-2:2], SEED_COMMAND[2:-2:2], strict=True)
    command = ["match_images"] + [f"{flag}={value}" for flag, value in pairs]
    command += ["--output_image=memory://cli-match/out.png", "--seed=7", "--max_trials=500"]
    assert main(command) == 0
    assert "Found 25 inliers" in capsys.readouterr().out
    assert read_image("memory://cli-match/out.png").size == (220, 140)


def test_reference_delf_against_a_moved_copy(tmp_path, capsys):
    """A .delf written by the original DELF, against its features seen through a
    similarity, with 300 descriptors swapped between features (wrong matches)."""
    reference = DATA / "reference_features" / "hertford_000056.delf"
    if not reference.exists():
        pytest.skip(f"reference features not found: {reference} (see shared/data/README.md)")
    original = read_from_file(str(reference))
    rng = np.random.default_rng(0)
    angle = np.deg2rad(15)
    linear = 0.8 * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    locations = original.locations @ linear.T + (100.0, 50.0)
    descriptors = original.descriptors.copy()
    swapped = rng.choice(len(descriptors), 300, replace=False)
    descriptors[swapped] = descriptors[np.roll(swapped, 1)]
    write_features(tmp_path / "moved.delf", locations, descriptors)
    write_image(tmp_path / "a.jpg", 1010, 760, seed=3)
    write_image(tmp_path / "b.jpg", 1000, 900, seed=4)
    argv = ["match_images", f"--image_1_path={tmp_path / 'a.jpg'}"]
    argv += [f"--image_2_path={tmp_path / 'b.jpg'}", f"--features_1_path={reference}"]
    argv += [f"--features_2_path={tmp_path / 'moved.delf'}"]
    argv += [f"--output_image={tmp_path / 'out.png'}"]
    assert main(argv) == 0
    expected = match_features(original, read_from_file(str(tmp_path / "moved.delf")))
    assert 700 <= expected.num_inliers <= 1000
    assert f"Found {expected.num_inliers} inliers" in capsys.readouterr().out


def run_with_error(argv: list[str], capsys) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("delf match_images: error: ")
    return lines[0]


def test_missing_features_file(workdir, capsys):
    (workdir / "data" / "oxford5k_features" / "oxford_000317.delf").unlink()
    message = run_with_error(SEED_COMMAND, capsys)
    assert "--features_2_path" in message
    assert "data/oxford5k_features/oxford_000317.delf" in message
    assert not (workdir / "matched_images.png").exists()


def test_corrupt_features_file(workdir, capsys):
    (workdir / "data" / "oxford5k_features" / "hertford_000056.delf").write_bytes(b"\xff" * 9)
    message = run_with_error(SEED_COMMAND, capsys)
    assert "--features_1_path" in message and "hertford_000056.delf" in message


def test_missing_and_corrupt_image(workdir, capsys):
    image = workdir / "data" / "oxford5k_images" / "oxford_000317.jpg"
    image.unlink()
    message = run_with_error(SEED_COMMAND, capsys)
    assert "--image_2_path" in message and "oxford_000317.jpg" in message
    image.write_bytes(b"not a jpeg")
    message = run_with_error(SEED_COMMAND, capsys)
    assert "oxford_000317.jpg: not an image" in message


def test_descriptor_dimensions_differ(workdir, capsys):
    rng = np.random.default_rng(5)
    path = workdir / "data" / "oxford5k_features" / "oxford_000317.delf"
    write_features(path, rng.uniform(0, 90, size=(10, 2)), unit_rows(rng, 10, 128))
    message = run_with_error(SEED_COMMAND, capsys)
    assert "descriptor dimensions differ: 40 in image 1, 128 in image 2" in message
    assert "hertford_000056.delf" in message and "oxford_000317.delf" in message
