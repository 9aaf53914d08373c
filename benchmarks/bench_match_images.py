"""Benchmark of match_images: nearest-neighbour matching and RANSAC against the original's."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from types import SimpleNamespace

import numpy as np
from scipy.spatial import cKDTree
from skimage.measure import ransac
from skimage.transform import AffineTransform

from delf_core.matching import MatchConfig, match_features, putative_matches, ransac_affine

# y' = 0.9 y - 0.2 x + 30, x' = 0.15 y + 1.1 x - 12: a moderate viewpoint change.
AFFINE = np.array([[0.9, -0.2, 30.0], [0.15, 1.1, -12.0]])
IMAGE_SIZE = (768.0, 1024.0)  # (height, width) of the images the locations lie in


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_features", type=int, default=1000, help="per image")
    parser.add_argument("--dim", type=int, default=128, help="descriptor size (DELG: 128)")
    parser.add_argument("--num_matches", type=int, default=300, help="putative matches per pair")
    parser.add_argument("--inlier_ratio", type=float, default=0.3, help="share obeying AFFINE")
    parser.add_argument("--pairs", type=int, default=20, help="pairs timed for ours")
    parser.add_argument("--skimage_pairs", type=int, default=5, help="pairs for skimage")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def unit_rows(rng: np.random.Generator, rows: int, dim: int) -> np.ndarray:
    values = rng.normal(size=(rows, dim)).astype(np.float32)
    return values / np.linalg.norm(values, axis=1, keepdims=True)


def make_pair(rng: np.random.Generator, args: argparse.Namespace):
    """Two images' features: `num_matches` descriptors of image 2 lie ~0.5 from one of
    image 1 (random unit vectors lie ~1.4 apart, beyond the 0.8 threshold); a share
    `inlier_ratio` of those sit where AFFINE puts them, with 2 px noise."""
    n, m = args.num_features, args.num_matches
    locations_1 = rng.uniform((0, 0), IMAGE_SIZE, size=(n, 2)).astype(np.float32)
    descriptors_1 = unit_rows(rng, n, args.dim)
    locations_2 = rng.uniform((0, 0), IMAGE_SIZE, size=(n, 2)).astype(np.float32)
    descriptors_2 = unit_rows(rng, n, args.dim)
    matched = rng.choice(n, m, replace=False)
    noise = unit_rows(rng, m, args.dim)
    descriptors_2[:m] = 0.87 * descriptors_1[matched] + 0.5 * noise
    descriptors_2[:m] /= np.linalg.norm(descriptors_2[:m], axis=1, keepdims=True)
    inliers = round(args.inlier_ratio * m)
    moved = locations_1[matched[:inliers]] @ AFFINE[:, :2].T + AFFINE[:, 2]
    locations_2[:inliers] = moved + rng.normal(scale=2.0, size=(inliers, 2))
    order = rng.permutation(n)
    return (
        SimpleNamespace(locations=locations_1, descriptors=descriptors_1),
        SimpleNamespace(locations=locations_2[order], descriptors=descriptors_2[order]),
    )


def timed(function, items) -> tuple[float, list]:
    """Median seconds per item (robust to a busy machine) and the results, after one
    untimed warm-up call."""
    function(items[0])
    seconds, results = [], []
    for item in items:
        began = time.perf_counter()
        results.append(function(item))
        seconds.append(time.perf_counter() - began)
    return float(np.median(seconds)), results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    rng = np.random.default_rng(args.seed)
    pairs = [make_pair(rng, args) for _ in range(max(args.pairs, args.skimage_pairs))]
    print(
        f"bench_match_images: {args.num_features} x {args.num_features} features, "
        f"{args.dim}-d, {args.num_matches} putative matches per pair, "
        f"{args.inlier_ratio:.0%} inliers, {args.pairs} pairs (skimage: {args.skimage_pairs})"
    )
    ours_pairs, ref_pairs = pairs[: args.pairs], pairs[: args.skimage_pairs]

    # Nearest-neighbour matching: ours (blocked BLAS distances) vs the original's cKDTree.
    def ours_nn(pair):
        return putative_matches(pair[0].descriptors, pair[1].descriptors)

    def kdtree_nn(pair):
        tree = cKDTree(pair[0].descriptors)
        return tree.query(pair[1].descriptors, distance_upper_bound=0.8)[1]

    nn_s, matches = timed(ours_nn, pairs)
    kdtree_s, _ = timed(kdtree_nn, pairs)
    print(f"putative_matches_mean {np.mean([len(m) for m in matches]):.1f}")
    print(f"nn_ours_pairs_per_s {1 / nn_s:.1f}")
    print(f"nn_kdtree_pairs_per_s {1 / kdtree_s:.1f}")
    print(f"ratio_nn_kdtree_to_ours {kdtree_s / nn_s:.2f}")

    # RANSAC on the same correspondences: ours vs skimage.measure.ransac as called
    # by the original (AffineTransform, 3 samples, 20 px, 1000 trials).
    points = [
        (pair[0].locations[m.indices_1], pair[1].locations[m.indices_2])
        for pair, m in zip(pairs, matches, strict=True)
    ]
    ours_s, ours = timed(lambda pts: ransac_affine(*pts, seed=0), points[: args.pairs])

    def reference(pts):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "No inliers found" on hopeless pairs
            _, inliers = ransac(
                pts, AffineTransform, min_samples=3, residual_threshold=20, max_trials=1000, rng=0
            )
        return 0 if inliers is None else int(np.count_nonzero(inliers))

    ref_s, ref_counts = timed(reference, points[: args.skimage_pairs])
    print(f"ransac_ours_ms_per_pair {ours_s * 1e3:.2f}")
    print(f"ransac_skimage_ms_per_pair {ref_s * 1e3:.1f}")
    print(f"ratio_ransac_skimage_to_ours {ref_s / ours_s:.1f}")
    ours_counts = [r.num_inliers for r in ours[: args.skimage_pairs]]
    true_count = round(args.inlier_ratio * args.num_matches)
    print(f"inliers_constructed {true_count}")
    print(f"inliers_ours {' '.join(map(str, ours_counts))}")
    print(f"inliers_skimage {' '.join(map(str, ref_counts))}")
    differences = [abs(a - b) for a, b in zip(ours_counts, ref_counts, strict=True)]
    print(f"inliers_max_abs_diff {max(differences)}")

    # The whole match_images computation per pair, ours vs the original's recipe.
    config = MatchConfig()
    pair_s, _ = timed(lambda p: match_features(p[0], p[1], config), ours_pairs)

    def original(p):
        tree = cKDTree(p[0].descriptors)
        _, nearest = tree.query(p[1].descriptors, distance_upper_bound=0.8)
        kept = np.flatnonzero(nearest < len(p[0].descriptors))
        return reference((p[0].locations[nearest[kept]], p[1].locations[kept]))

    original_s, _ = timed(original, ref_pairs)
    print(f"match_features_pairs_per_s {1 / pair_s:.1f}")
    print(f"original_recipe_pairs_per_s {1 / original_s:.2f}")
    print(f"ratio_to_original_recipe {original_s / pair_s:.1f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
