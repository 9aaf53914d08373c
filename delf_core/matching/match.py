"""Two images' local features to verified correspondences: matching, then RANSAC."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from delf_core.matching.putative import PutativeMatches, putative_matches
from delf_core.matching.ransac import RansacResult, ransac_affine
from delf_core.step_config import nested, option


class FeatureSet(Protocol):
    """What matching needs of one image's features (a `.delf` file's contents)."""

    @property
    def locations(self) -> np.ndarray: ...  # [N, 2] (y, x) pixels

    @property
    def descriptors(self) -> np.ndarray: ...  # [N, D]


@dataclass(frozen=True)
class MatchConfig:
    """Matching and verification settings; defaults are the original match_images'.

    Attributes:
        min_samples: points per RANSAC sample (3 for an affine map).
    """

    distance_threshold: float = option(
        0.8, "descriptor distance below which a nearest neighbour is a putative match"
    )
    residual_threshold: float = option(20.0, "RANSAC inlier distance in pixels")
    max_trials: int = option(1000, "most RANSAC samples", minimum=1)
    min_samples: int = 3
    # The original is unseeded; None draws fresh entropy.
    seed: int | None = option(
        0,
        "RANSAC seed: the same features always give the same inlier count "
        "(the original is unseeded)",
        minimum=0,
    )


@dataclass(frozen=True)
class MatchImagesConfig:
    """The flags of `delf match_images`: two images, their features, the picture."""

    image_1_path: str = option("test_images/image_1.jpg", "image 1 (local path or gs://)")
    image_2_path: str = option("test_images/image_2.jpg", "image 2 (local path or gs://)")
    features_1_path: str = option("test_features/image_1.delf", "DELF features of image 1")
    features_2_path: str = option("test_features/image_2.delf", "DELF features of image 2")
    output_image: str = option("test_match.png", "the match picture, as PNG")
    matching: MatchConfig = nested(MatchConfig)


@dataclass(frozen=True)
class MatchResult:
    """Putative matches and their geometric verification.

    Attributes:
        matches: index pairs of the putative matches.
        locations_1: [M, 2] image-1 locations of the matches, (y, x).
        locations_2: [M, 2] image-2 locations of the matches, (y, x).
        verification: RANSAC's model and inlier mask over the M matches.
    """

    matches: PutativeMatches
    locations_1: np.ndarray
    locations_2: np.ndarray
    verification: RansacResult

    @property
    def num_matches(self) -> int:
        return len(self.matches)

    @property
    def inliers(self) -> np.ndarray:
        return self.verification.inliers

    @property
    def num_inliers(self) -> int:
        return self.verification.num_inliers


def match_features(
    features_1: FeatureSet, features_2: FeatureSet, config: MatchConfig | None = None
) -> MatchResult:
    """Matches two images' local features and verifies them with an affine RANSAC.

    Args:
        features_1: image 1's locations and descriptors.
        features_2: image 2's locations and descriptors.
        config: thresholds and seed; the original's defaults when None.

    Returns:
        The putative matches, their locations and the RANSAC result; fewer than
        `min_samples` matches give 0 inliers.

    Raises:
        ValueError: malformed features, or descriptors of different dimensions.
    """
    config = config or MatchConfig()
    locations_1, descriptors_1 = _checked(features_1, "image 1")
    locations_2, descriptors_2 = _checked(features_2, "image 2")
    matches = putative_matches(descriptors_1, descriptors_2, config.distance_threshold)
    matched_1 = locations_1[matches.indices_1]
    matched_2 = locations_2[matches.indices_2]
    verification = ransac_affine(
        matched_1,
        matched_2,
        residual_threshold=config.residual_threshold,
        max_trials=config.max_trials,
        min_samples=config.min_samples,
        seed=config.seed,
    )
    return MatchResult(matches, matched_1, matched_2, verification)


def _checked(features: FeatureSet, name: str) -> tuple[np.ndarray, np.ndarray]:
    locations = np.asarray(features.locations, dtype=np.float64)
    descriptors = np.asarray(features.descriptors)
    # An empty feature file may come back as flat empty arrays.
    if locations.size == 0:
        locations = locations.reshape(0, 2)
    if descriptors.size == 0 and descriptors.ndim < 2:
        descriptors = descriptors.reshape(0, 0)
    if locations.ndim != 2 or locations.shape[1] != 2:
        raise ValueError(f"{name}: locations must be [N, 2] (y, x), got {locations.shape}")
    if descriptors.ndim != 2 or len(descriptors) != len(locations):
        raise ValueError(
            f"{name}: {len(locations)} locations but descriptors of shape {descriptors.shape}"
        )
    return locations, descriptors
