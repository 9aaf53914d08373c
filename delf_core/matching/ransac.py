"""RANSAC with an affine model, vectorised over trials, with scikit-image's semantics."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Trials scored at once are capped by residual-matrix size (trials x points), so
# memory stays a few MB whatever the number of matches.
_RESIDUALS_PER_CHUNK = 1 << 18
_FIRST_CHUNK = 64
# A sample whose source points are this close to collinear has no unique affine.
_DEGENERATE = 1e-10


@dataclass(frozen=True)
class RansacResult:
    """The outcome of `ransac_affine`.

    Attributes:
        model: [3, 3] affine matrix mapping homogeneous points_1 to points_2, in the
            coordinate order given (DELF's (y, x)); None when no model was found.
        inliers: [N] bool mask of the best sampled model's consensus set.
        num_trials: samples drawn before stopping.
    """

    model: np.ndarray | None
    inliers: np.ndarray
    num_trials: int

    @property
    def num_inliers(self) -> int:
        return int(np.count_nonzero(self.inliers))

    def transform(self, points: np.ndarray) -> np.ndarray:
        """Maps [N, 2] points of image 1 into image 2 with the fitted model."""
        if self.model is None:
            raise ValueError("no model was fitted")
        points = np.asarray(points, dtype=np.float64)
        return points @ self.model[:2, :2].T + self.model[:2, 2]


def ransac_affine(
    points_1: np.ndarray,
    points_2: np.ndarray,
    residual_threshold: float = 20.0,
    max_trials: int = 1000,
    min_samples: int = 3,
    seed: int | np.random.Generator | None = 0,
    stop_probability: float = 1.0,
) -> RansacResult:
    """Fits an affine map points_1 -> points_2 robustly, as skimage.measure.ransac does.

    Same semantics as `ransac((points_1, points_2), AffineTransform, min_samples,
    residual_threshold, max_trials=max_trials, stop_probability=stop_probability)`:
    a point is an inlier when the Euclidean distance between its mapped and its
    observed position is strictly below `residual_threshold`; the best model has the
    most inliers, ties going to the lower sum of squared residuals; trials stop early
    once enough have been drawn for the best inlier ratio (skimage's dynamic trial
    count, which stops early even at stop_probability=1 when most points agree); the
    returned model is a least-squares fit on the best model's inliers, and the
    returned inliers are the best sampled model's. The trials differ only in how
    they run: all samples of a chunk are drawn, fitted and scored at once.

    Args:
        points_1: [N, 2] source points.
        points_2: [N, 2] destination points, row i matching row i of points_1.
        residual_threshold: inlier distance bound, in the points' units (pixels).
        max_trials: most samples drawn.
        min_samples: points per sample (3 determines an affine map).
        seed: seed or Generator of the sampling; the same seed gives the same result.
        stop_probability: confidence of the dynamic trial count, in [0, 1].

    Returns:
        The model, the inlier mask and the number of trials; with fewer than
        `min_samples` points, or no sample with an inlier, no model and no inliers.
    """
    src, dst = _points(points_1), _points(points_2)
    if len(src) != len(dst):
        raise ValueError(f"{len(src)} source points but {len(dst)} destination points")
    if min_samples < 3:
        raise ValueError(f"an affine model needs min_samples >= 3, got {min_samples}")
    if residual_threshold < 0 or not 0 <= stop_probability <= 1:
        raise ValueError(
            f"need residual_threshold >= 0 and stop_probability in [0, 1], got "
            f"{residual_threshold} and {stop_probability}"
        )
    num_points = len(src)
    no_model = RansacResult(None, np.zeros(num_points, dtype=bool), 0)
    if num_points < min_samples or max_trials < 1:
        return no_model

    rng = np.random.default_rng(seed)
    threshold_sq = float(residual_threshold) ** 2
    best_count, best_sum, best_trial = 0, np.inf, -1
    best_inliers = no_model.inliers
    best_matrix = best_offset = None
    limit = float(max_trials)
    chunk_cap = max(_FIRST_CHUNK, _RESIDUALS_PER_CHUNK // num_points)
    trials, chunk = 0, _FIRST_CHUNK
    while trials < limit:
        size = int(min(chunk, chunk_cap, limit - trials))
        samples = _distinct_samples(rng, num_points, min_samples, size)
        matrix, offset, valid = _fit(src[samples], dst[samples])
        squared = _squared_residuals(matrix, offset, src, dst)
        inside = squared < threshold_sq
        counts = np.where(valid, np.count_nonzero(inside, axis=1), -1)  # failed fits never win
        sums = squared.sum(axis=1)
        # Only a trial at least as good as every earlier one can become the best;
        # walk those few in order so the dynamic trial count shrinks as skimage's does.
        record = np.maximum.accumulate(np.maximum(counts, best_count))
        for k in np.flatnonzero(valid & (counts >= record)):
            if trials + k >= limit:
                break
            if counts[k] > best_count or (counts[k] == best_count and sums[k] < best_sum):
                best_count, best_sum, best_trial = int(counts[k]), float(sums[k]), trials + k
                best_inliers, best_matrix, best_offset = inside[k], matrix[k], offset[k]
                limit = min(
                    limit,
                    _dynamic_max_trials(best_count, num_points, min_samples, stop_probability),
                )
        # skimage checks the trial count before each trial: those after the last
        # improvement run until the count reaches the (possibly lowered) limit.
        trials = int(min(trials + size, max(limit, best_trial + 1)))
        chunk *= 2
    if best_count == 0:
        return RansacResult(None, no_model.inliers, trials)

    matrix, offset, valid = _fit(src[best_inliers][None], dst[best_inliers][None])
    if valid[0]:  # else the inliers are collinear: keep the sampled model
        best_matrix, best_offset = matrix[0], offset[0]
    model = np.eye(3)
    model[:2, :2], model[:2, 2] = best_matrix, best_offset
    return RansacResult(model, best_inliers.copy(), trials)


def _points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.size == 0:
        return points.reshape(0, 2)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"points must be [N, 2], got shape {points.shape}")
    return points


def _distinct_samples(rng: np.random.Generator, n: int, k: int, trials: int) -> np.ndarray:
    """[trials, k] indices in [0, n), distinct within a row, uniform over k-subsets.

    Draw j picks among the n - j unused indices: a uniform integer below n - j,
    shifted past each earlier pick it reaches (in increasing order of the picks).
    """
    picks = np.empty((trials, k), dtype=np.int64)
    for j in range(k):
        value = rng.integers(0, n - j, size=trials)
        for earlier in np.sort(picks[:, :j], axis=1).T:
            value += value >= earlier
        picks[:, j] = value
    return picks


def _fit(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Least-squares affine maps of a batch of point sets: exact for 3 points.

    Args:
        src: [T, k, 2] source points of T samples.
        dst: [T, k, 2] destination points.

    Returns:
        [T, 2, 2] linear parts, [T, 2] offsets, and [T] bool: False where the source
        points are (nearly) collinear, so the map is not determined.
    """
    src_mean = src.mean(axis=1, keepdims=True)
    dst_mean = dst.mean(axis=1, keepdims=True)
    s = src - src_mean
    d = dst - dst_mean
    # Centred normal equations: M = (D^T S)(S^T S)^-1, with a closed-form 2x2 inverse.
    sxx = np.einsum("tki,tkj->tij", s, s)
    dxs = np.einsum("tki,tkj->tij", d, s)
    det = sxx[:, 0, 0] * sxx[:, 1, 1] - sxx[:, 0, 1] * sxx[:, 1, 0]
    trace = sxx[:, 0, 0] + sxx[:, 1, 1]
    valid = det > _DEGENERATE * trace * trace
    det = np.where(valid, det, 1.0)
    inverse = np.empty_like(sxx)
    inverse[:, 0, 0] = sxx[:, 1, 1] / det
    inverse[:, 1, 1] = sxx[:, 0, 0] / det
    inverse[:, 0, 1] = -sxx[:, 0, 1] / det
    inverse[:, 1, 0] = -sxx[:, 1, 0] / det
    matrix = dxs @ inverse
    offset = dst_mean[:, 0] - np.einsum("tij,tj->ti", matrix, src_mean[:, 0])
    return matrix, offset, valid


def _squared_residuals(
    matrix: np.ndarray, offset: np.ndarray, src: np.ndarray, dst: np.ndarray
) -> np.ndarray:
    """[T, N] squared distances between every model's image of src and dst."""
    dy = matrix[:, 0, :1] * src[:, 0] + matrix[:, 0, 1:] * src[:, 1] + (offset[:, :1] - dst[:, 0])
    dx = matrix[:, 1, :1] * src[:, 0] + matrix[:, 1, 1:] * src[:, 1] + (offset[:, 1:] - dst[:, 1])
    return dy * dy + dx * dx


def _dynamic_max_trials(inliers: int, points: int, min_samples: int, probability: float) -> float:
    """Trials after which an all-inlier sample has been drawn with `probability`.

    skimage's formula, including its clipping to machine epsilon: at probability 1
    it still stops early when the inlier ratio is high (e.g. 28 trials at 90%).
    """
    if probability == 0:
        return 0.0
    if inliers == 0:
        return np.inf
    eps = np.spacing(1)
    nom = np.clip(1 - probability, eps, 1 - eps)
    denom = np.clip(1 - (inliers / points) ** min_samples, eps, 1 - eps)
    return float(np.ceil(np.log(nom) / np.log(denom)))
