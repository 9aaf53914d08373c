"""Revisited metrics from positions in bounded memory: equal to those of the full ranking."""

import numpy as np
import pytest

from delf_core.retrieval.metrics import compute_metrics, compute_metrics_from_positions
from delf_core.retrieval.positions import search_with_positions


def _positions_in(ranking: np.ndarray, ids: np.ndarray) -> np.ndarray:
    where = np.empty(len(ranking), np.int64)
    where[ranking] = np.arange(len(ranking))
    return where[ids]


@pytest.mark.parametrize("seed", range(8))
def test_metrics_from_positions_equal_those_of_the_full_ranking(seed):
    rng = np.random.default_rng(seed)
    num_index = int(rng.integers(10, 60))
    num_queries = int(rng.integers(1, 8))
    ranked = np.stack([rng.permutation(num_index) for _ in range(num_queries)])
    truth, positives, junk = [], [], []
    for q in range(num_queries):
        chosen = rng.permutation(num_index)
        # Some queries have no positives (NaN, left out of the means), some no junk.
        ok = chosen[: int(rng.integers(0, 6))]
        bad = chosen[len(ok) : len(ok) + int(rng.integers(0, 6))]
        truth.append({"ok": ok, "junk": bad})
        positives.append(_positions_in(ranked[q], ok) if len(ok) else None)
        junk.append(_positions_in(ranked[q], bad))
    expected = compute_metrics(ranked, truth, [1, 5, 10])
    found = compute_metrics_from_positions(positives, junk, num_index, [1, 5, 10])
    for name in ("mean_average_precision", "mean_precisions", "mean_recalls",
                 "average_precisions", "precisions", "recalls"):  # fmt: skip
        np.testing.assert_array_equal(getattr(found, name), getattr(expected, name), name)


@pytest.mark.parametrize("memory_bytes", [3_000, 30_000, 10**9])
@pytest.mark.parametrize("seed", range(4))
def test_positions_equal_those_of_the_full_stable_sort(seed, memory_bytes):
    rng = np.random.default_rng(seed)
    # Small integers: exact products and many ties, which the lower id wins.
    queries = rng.integers(-2, 3, (int(rng.integers(1, 12)), 4)).astype(np.float32)
    index = rng.integers(-2, 3, (int(rng.integers(5, 300)), 4)).astype(np.float32)
    targets = [rng.choice(len(index), int(rng.integers(0, 5)), replace=False) for _ in queries]
    k = int(rng.integers(1, 40))
    found = search_with_positions(queries, index, k, targets, memory_bytes)
    full = np.argsort(-(queries @ index.T), axis=1, kind="stable")
    for q, ids in enumerate(targets):
        np.testing.assert_array_equal(found.positions[q], _positions_in(full[q], ids))
    np.testing.assert_array_equal(found.top.ids, full[:, : min(k, len(index))])


def test_a_target_outside_the_index_is_refused():
    with pytest.raises(ValueError, match=r"target ids must be in 0\.\.2"):
        search_with_positions(np.ones((1, 2), np.float32), np.ones((3, 2), np.float32), 1, [[3]])
