"""Global search in bounded memory: blocked dot products with a running top-k.

No [queries x index] matrix is ever built: the index is read in blocks of rows, each
block's similarities are cut to their best k per query at once, and merged with the
best k so far. The result equals a stable full sort of the similarities (ties go to
the lower index id), whatever the block sizes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Protocol

import numpy as np

DEFAULT_MEMORY_BYTES = 2 * 1024**3
# Bytes per similarity while a block is cut: the float32 similarity, its partitioned
# copy and the boolean mask of candidates, with room for numpy's temporaries.
_BYTES_PER_SIMILARITY = 4 + 4 + 1 + 3
# Fewer rows than this per block and the matrix products lose most of their speed.
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


def _block_best(similarities: np.ndarray, first_id: int, k: int) -> np.ndarray:
    """Keys of each row's best min(k, columns) similarities of one block.

    Only the entries at or above the row's k-th largest value get keys: building keys
    for the whole block would cost more than its matrix product.
    """
    num_rows, columns = similarities.shape
    k = min(k, columns)
    if columns > k:
        kth = np.partition(similarities, columns - k, axis=1)[:, columns - k]
        rows, cols = np.nonzero(similarities >= kth[:, None])
    else:
        rows, cols = np.divmod(np.arange(num_rows * columns), columns)
    keys = _sort_keys(similarities[rows, cols], cols + first_id)
    counts = np.bincount(rows, minlength=num_rows)
    if counts.min(initial=k) < k:
        raise ValueError("similarities hold NaN: descriptors with NaN or overflowing values")
    if (counts == k).all():
        return keys.reshape(num_rows, k)
    # Ties at the k-th value: keep each row's k largest keys.
    order = np.lexsort((~keys, rows))
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    return keys[order][starts[:, None] + np.arange(k)]


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
    total, done = num_queries * num_index, 0
    for q_start in range(0, num_queries, query_rows):
        block = np.ascontiguousarray(queries[q_start : q_start + query_rows], np.float32)
        best = np.zeros((len(block), 0), np.uint64)
        for i_start in range(0, num_index, index_rows):
            rows = np.ascontiguousarray(index[i_start : i_start + index_rows], np.float32)
            keys = _block_best(block @ rows.T, i_start, k)
            best = _largest(np.concatenate([best, keys], axis=1), k)
            done += len(block) * len(rows)
            if on_block is not None:
                on_block(done, total)
        found = slice(q_start, q_start + len(block))
        ids[found], scores[found] = _decode(np.sort(best, axis=1)[:, ::-1])
    return TopK(ids, scores)
