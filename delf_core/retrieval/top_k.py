"""Global search in bounded memory: blocked dot products with a running top-k.

No [queries x index] matrix is ever built: the index is read in blocks of rows, each
block's similarities are cut to their best k per query at once (only those at or above
a sampled bound of the k-th best, and the k-th best so far, are sorted), and merged with
the best k so far. The result equals a stable full sort of the similarities (ties go to
the lower index id), whatever the block sizes.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

DEFAULT_MEMORY_BYTES = 2 * 1024**3
# Bytes per similarity of a block: the float32 product, and the cut of at most a
# sixteenth of the block at a time, whose mask, survivors, keys and their order take up
# to 48 bytes a similarity (when every similarity in a row ties).
_CUT_FRACTION = 16
_BYTES_PER_SIMILARITY = 4 + 48 // _CUT_FRACTION
# Similarities cut at a time: its mask and sample stay in the cache.
_CUT_SIMILARITIES = 1 << 20
# The k-th best of every `_SAMPLE_STRIDE`-th similarity of a row is a lower bound of the
# row's k-th best: only the few similarities at or above it get keys.
_SAMPLE_STRIDE = 16
_MIN_ROWS = 256
_MAX_QUERY_ROWS = 8192
_ID_MASK = np.uint64(0xFFFFFFFF)
_SIGN = np.uint32(0x80000000)


class Rows(Protocol):
    """A [rows, dim] float matrix read a block of rows at a time: an array or a file."""

    @property
    def shape(self) -> tuple[int, ...]: ...

    def __getitem__(self, rows: slice) -> np.ndarray: ...


@dataclasses.dataclass(frozen=True)
class TopK:
    """The best `k` index ids per query, by descending similarity, and their similarities."""

    ids: np.ndarray  # int64 [queries, k]
    scores: np.ndarray  # float32 [queries, k]


def block_rows(
    num_queries: int, num_index: int, dim: int, k: int, memory_bytes: int
) -> tuple[int, int]:
    """(query rows, index rows) per block so one block's working set fits `memory_bytes`.

    Raises:
        ValueError: `memory_bytes` cannot hold even one query against one index row.
    """
    query_rows = max(1, min(num_queries, _MAX_QUERY_ROWS))
    while True:
        # The query block, its running top-k (keys, candidates) and one index block.
        fixed = query_rows * (dim * 4 + 4 * k * 8)
        per_index_row = query_rows * _BYTES_PER_SIMILARITY + dim * 4
        index_rows = min(num_index, (memory_bytes - fixed) // per_index_row)
        if index_rows >= min(_MIN_ROWS, num_index) or query_rows == 1:
            break
        query_rows = max(1, query_rows // 2)
    if index_rows < 1:
        raise ValueError(
            f"a search memory of {memory_bytes} bytes cannot hold one query of {dim} "
            f"values against one index row with k={k}; give it more"
        )
    return query_rows, int(index_rows)


def _sort_keys(similarities: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """uint64 keys that order as (similarity descending, then index id ascending).

    The high 32 bits are the float32's bits mapped to an order-preserving unsigned
    integer; the low 32 bits are the complement of the id, so on equal similarity the
    lower id has the larger key. Every key is unique, so "the k largest" is exact.
    """
    bits = (similarities.astype(np.float32) + np.float32(0.0)).view(np.uint32)  # -0.0 is 0.0
    ordered = np.where(bits & _SIGN, ~bits, bits | _SIGN).astype(np.uint64)
    return (ordered << np.uint64(32)) | (_ID_MASK - ids.astype(np.uint64))


def _decode(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ids = (_ID_MASK - (keys & _ID_MASK)).astype(np.int64)
    ordered = (keys >> np.uint64(32)).astype(np.uint32)
    bits = np.where(ordered & _SIGN, ordered & ~_SIGN, ~ordered)
    return ids, bits.view(np.float32)


def _largest(keys: np.ndarray, k: int) -> np.ndarray:
    if keys.shape[1] <= k:
        return keys
    cut = np.argpartition(keys, keys.shape[1] - k, axis=1)[:, -k:]
    return np.take_along_axis(keys, cut, axis=1)


def read_rows(matrix: Rows, start: int, count: int) -> np.ndarray:
    """Rows start.. start+count of `matrix` as a contiguous float32 array, checked finite.

    Raises:
        ValueError: the rows hold NaN or infinite values (their similarities would
            silently never rank); checked here at a fraction of the products' cost.
    """
    rows = np.ascontiguousarray(matrix[start : start + count], np.float32)
    # A float64 sum is NaN or infinite exactly when some value is (float32 values cannot
    # overflow it), and needs no [rows, dim] mask.
    if not np.isfinite(rows.sum(dtype=np.float64)):
        raise ValueError("descriptors hold NaN or infinite values")
    return rows


def _floor(best: np.ndarray, k: int) -> np.ndarray:
    """Per row, the similarity a candidate must reach to enter `best`: its k-th key's."""
    if best.shape[1] < k:
        return np.full(len(best), -np.inf, np.float32)
    lowest = best.min(axis=1)
    _, scores = _decode(lowest)
    # Key 0 pads a row that has fewer than k candidates so far.
    return np.where(lowest > 0, scores, np.float32(-np.inf)).astype(np.float32)


def _cut_best(similarities: np.ndarray, first_id: int, k: int, floor: np.ndarray) -> np.ndarray:
    """[rows, k] keys of each row's best k similarities at or above its floor; 0 pads."""
    num_rows, columns = similarities.shape
    threshold = floor
    stride = _SAMPLE_STRIDE if columns >= 4 * k * _SAMPLE_STRIDE else 1
    sample = similarities[:, ::stride]
    if sample.shape[1] > k:
        cut = sample.shape[1] - k
        threshold = np.maximum(floor, np.partition(sample, cut, axis=1)[:, cut])
    rows, cols = np.nonzero(similarities >= threshold[:, None])
    keys = _sort_keys(similarities[rows, cols], cols + first_id)
    counts = np.bincount(rows, minlength=num_rows)
    width = int(counts.max(initial=0))
    if num_rows * width <= 2 * len(keys) + num_rows * k:
        # Survivors come row by row: lay them out as a padded [rows, width] matrix.
        starts = np.cumsum(counts) - counts
        padded = np.zeros((num_rows, max(width, k)), np.uint64)
        padded[rows, np.arange(len(rows)) - starts[rows]] = keys
        return _largest(padded, k)
    # Many ties at the threshold: keep each row's k largest keys.
    order = np.lexsort((~keys, rows))
    starts = np.cumsum(counts) - counts
    taken = np.minimum(counts, k)
    best = np.zeros((num_rows, k), np.uint64)
    within = np.arange(k)
    mask = within[None, :] < taken[:, None]
    best[mask] = keys[order][(starts[:, None] + within)[mask]]
    return best


def _cores() -> int:
    try:
        return max(1, min(8, len(os.sched_getaffinity(0))))
    except AttributeError:  # not on Linux
        return max(1, min(8, os.cpu_count() or 1))


def _block_best(similarities: np.ndarray, first_id: int, k: int, floor: np.ndarray) -> np.ndarray:
    """[rows, k] keys of each row's best k similarities of one block (0 pads).

    The block is cut a few rows at a time, and only similarities at or above both the
    row's floor and a sampled bound of its k-th best get keys: building keys for the
    whole block would cost more than its matrix product. The cuts run on every core
    (NumPy lets go of the GIL), between the products, which have the cores to themselves.
    """
    num_rows, columns = similarities.shape
    workers = _cores()
    # With `workers` cuts in flight, each is a smaller part of the block.
    most = num_rows * columns // (_CUT_FRACTION * workers)
    step = max(1, min(_CUT_SIMILARITIES, most) // max(columns, 1))
    best = np.zeros((num_rows, k), np.uint64)

    def cut(start: int) -> None:
        part = slice(start, start + step)
        best[part] = _cut_best(similarities[part], first_id, k, floor[part])

    starts = range(0, num_rows, step)
    if workers == 1 or len(starts) < 2 * workers:
        for start in starts:
            cut(start)
    else:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(cut, starts))
    return best


class RunningTopK:
    """The best `k` (similarity, id) of each of a block of queries, block after block.

    Blocks may come in any order: the keys are unique, so the result is the same.
    """

    def __init__(self, num_queries: int, k: int):
        self.k = k
        self._best = np.zeros((num_queries, 0), np.uint64)

    def add(self, similarities: np.ndarray, first_id: int) -> None:
        """Takes a [queries, columns] block of similarities to index ids first_id...."""
        keys = _block_best(similarities, first_id, self.k, _floor(self._best, self.k))
        self._best = _largest(np.concatenate([self._best, keys], axis=1), self.k)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, similarities), best first."""
        return _decode(np.sort(self._best, axis=1)[:, ::-1])


def top_k_by_similarity(
    queries: Rows,
    index: Rows,
    k: int,
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    on_block: Callable[[int, int], None] | None = None,
) -> TopK:
    """The `k` most similar index rows per query, by dot product.

    Args:
        queries: [Q, D] float descriptors.
        index: [N, D] float descriptors: an array, a memory-mapped matrix, or any `Rows`
            whose blocks are read as needed.
        k: How many ids per query; fewer when the index has fewer rows.
        memory_bytes: Bound on the search's working memory (the blocks and the running
            top-k; the inputs themselves are not counted).
        on_block: Called with (similarities done, similarities) after each block.

    Returns:
        ids and similarities, best first; equal similarities rank the lower id first,
        as a stable sort of the full similarity matrix would.

    Raises:
        ValueError: k below 1, descriptor sizes that differ, more than 2**32 - 1 index
            rows, or a memory bound too small for one row.
    """
    num_queries, dim = queries.shape
    num_index, index_dim = index.shape
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    if index_dim != dim:
        raise ValueError(f"queries have {dim} values per descriptor but the index has {index_dim}")
    if num_index >= int(_ID_MASK):
        raise ValueError(f"an index of {num_index} rows: at most {int(_ID_MASK) - 1}")
    k = min(k, num_index)
    query_rows, index_rows = block_rows(num_queries, max(num_index, 1), dim, k, memory_bytes)
    ids = np.zeros((num_queries, k), np.int64)
    scores = np.zeros((num_queries, k), np.float32)
    # One product buffer for every block: no fresh pages to fault in per block.
    product = np.empty((min(query_rows, num_queries), min(index_rows, num_index)), np.float32)
    total, done = num_queries * num_index, 0
    for q_start in range(0, num_queries, query_rows):
        block = read_rows(queries, q_start, query_rows)
        best = RunningTopK(len(block), k)
        for i_start in range(0, num_index, index_rows):
            rows = read_rows(index, i_start, index_rows)
            similarities = product[: len(block), : len(rows)]
            np.matmul(block, rows.T, out=similarities)
            best.add(similarities, i_start)
            done += len(block) * len(rows)
            # Freed before the next block is read: one index block at a time.
            del rows, similarities
            if on_block is not None:
                on_block(done, total)
        found = slice(q_start, q_start + len(block))
        ids[found], scores[found] = best.result()
    return TopK(ids, scores)
