"""Putative correspondences: each image-2 descriptor's nearest image-1 descriptor."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class PutativeMatches:
    """Index pairs into the two feature sets, one row per match.

    Attributes:
        indices_1: [M] int64 rows of image 1's features.
        indices_2: [M] int64 rows of image 2's features, increasing.
        distances: [M] float64 Euclidean descriptor distances.
    """

    indices_1: np.ndarray
    indices_2: np.ndarray
    distances: np.ndarray

    def __len__(self) -> int:
        return len(self.indices_1)


def putative_matches(
    descriptors_1: np.ndarray, descriptors_2: np.ndarray, distance_threshold: float = 0.8
) -> PutativeMatches:
    """Matches every descriptor of image 2 to its nearest neighbour in image 1.

    As the original match_images: a k-d tree over image 1, one Euclidean nearest
    neighbour per image-2 descriptor, kept when its distance is strictly below
    `distance_threshold` (cKDTree's `distance_upper_bound`). No ratio test and no
    mutual check, so several image-2 features may share an image-1 feature.

    Args:
        descriptors_1: [N1, D] descriptors of image 1 (L2-normalised for DELF).
        descriptors_2: [N2, D] descriptors of image 2.
        distance_threshold: largest distance kept (exclusive).

    Returns:
        The kept index pairs, ordered by image-2 index.

    Raises:
        ValueError: the descriptors are not 2-D or their dimensions differ.
    """
    descriptors_1 = np.asarray(descriptors_1)
    descriptors_2 = np.asarray(descriptors_2)
    if descriptors_1.ndim != 2 or descriptors_2.ndim != 2:
        raise ValueError(
            f"descriptors must be [N, D] arrays, got shapes {descriptors_1.shape} "
            f"and {descriptors_2.shape}"
        )
    if (
        len(descriptors_1)
        and len(descriptors_2)
        and descriptors_1.shape[1] != descriptors_2.shape[1]
    ):
        raise ValueError(
            f"descriptor dimensions differ: {descriptors_1.shape[1]} in image 1, "
            f"{descriptors_2.shape[1]} in image 2 (features from different models?)"
        )
    empty = np.zeros(0, dtype=np.int64)
    if not len(descriptors_1) or not len(descriptors_2):
        return PutativeMatches(empty, empty, np.zeros(0))
    tree = cKDTree(descriptors_1)
    distances, nearest = tree.query(descriptors_2, k=1, distance_upper_bound=distance_threshold)
    # No neighbour within the bound comes back as index N1 and distance inf.
    kept = np.flatnonzero(nearest < len(descriptors_1))
    return PutativeMatches(nearest[kept].astype(np.int64), kept.astype(np.int64), distances[kept])
