"""Bounded-memory global search: equal to the full stable sort, within its memory bound."""

import tracemalloc

import numpy as np
import pytest

from delf_core.retrieval.top_k import block_rows, top_k_by_similarity


def _full_sort(queries, index, k):
    similarities = queries @ index.T
    ids = np.argsort(-similarities, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(similarities, ids, axis=1)


@pytest.mark.parametrize("memory_bytes", [4_000, 40_000, 10**9])
@pytest.mark.parametrize("seed", range(6))
def test_equals_the_full_stable_sort_whatever_the_blocks(seed, memory_bytes):
    rng = np.random.default_rng(seed)
    # Small integers: every product is exact, and many similarities tie.
    queries = rng.integers(-2, 3, (int(rng.integers(1, 30)), 4)).astype(np.float32)
    index = rng.integers(-2, 3, (int(rng.integers(1, 400)), 4)).astype(np.float32)
    k = int(rng.integers(1, 150))
    found = top_k_by_similarity(queries, index, k, memory_bytes)
    ids, scores = _full_sort(queries, index, min(k, len(index)))
    np.testing.assert_array_equal(found.ids, ids)
    np.testing.assert_array_equal(found.scores, scores)


def test_ties_rank_the_lower_id_first_and_negative_zero_equals_zero():
    queries = np.array([[1.0, 0.0]], np.float32)
    index = np.array([[0.0, 5], [-0.0, 1], [2, 0], [0, 0], [2, 1], [-1, 0]], np.float32)
    found = top_k_by_similarity(queries, index, 6, memory_bytes=2_000)
    assert found.ids.tolist() == [[2, 4, 0, 1, 3, 5]]
    assert found.scores.tolist() == [[2, 2, 0, 0, 0, -1]]


def test_k_above_the_index_size_returns_the_whole_index_ranked():
    index = np.eye(3, dtype=np.float32)
    found = top_k_by_similarity(np.array([[0.1, 0.3, 0.2]], np.float32), index, 100)
    assert found.ids.tolist() == [[1, 2, 0]]


def test_working_memory_stays_within_the_bound_as_the_index_grows():
    rng = np.random.default_rng(0)
    queries = rng.standard_normal((64, 32)).astype(np.float32)
    bound = 2 * 1024**2
    for rows in (20_000, 80_000):
        index = rng.standard_normal((rows, 32)).astype(np.float32)
        tracemalloc.start()
        top_k_by_similarity(queries, index, 100, memory_bytes=bound)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert peak <= bound, f"{rows} index rows: peak {peak} bytes over the {bound} bound"


def test_bad_arguments_are_one_line_errors():
    queries, index = np.ones((2, 4), np.float32), np.ones((5, 4), np.float32)
    with pytest.raises(ValueError, match="k=0: must be at least 1"):
        top_k_by_similarity(queries, index, 0)
    with pytest.raises(ValueError, match="queries have 4 values .* the index has 3"):
        top_k_by_similarity(queries, np.ones((5, 3), np.float32), 1)
    with pytest.raises(ValueError, match="cannot hold one query"):
        top_k_by_similarity(queries, index, 1, memory_bytes=10)
    with pytest.raises(ValueError, match="NaN or infinite"):
        top_k_by_similarity(queries, np.full((5, 4), np.nan, np.float32), 1)


def test_blocks_grow_to_use_the_memory_given():
    small = block_rows(10_000, 1_000_000, 2048, 100, 256 * 1024**2)
    large = block_rows(10_000, 1_000_000, 2048, 100, 2 * 1024**3)
    assert large[0] * large[1] > 4 * small[0] * small[1]
    assert min(large) >= 256


def test_a_block_where_every_similarity_ties_stays_within_the_bound():
    # Duplicate descriptors: every similarity of a row ties, the cut's worst case.
    queries, index = np.ones((64, 32), np.float32), np.ones((20_000, 32), np.float32)
    bound = 2 * 1024**2
    tracemalloc.start()
    found = top_k_by_similarity(queries, index, 100, memory_bytes=bound)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak <= bound, f"peak {peak} bytes over the {bound} bound"
    assert found.ids.tolist() == [list(range(100))] * 64
