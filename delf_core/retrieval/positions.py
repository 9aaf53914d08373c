"""Global search that also says where chosen index images stand in each full ranking.

The Revisited metrics need, per query, only the positions of its positive and junk
images in the ranking of the whole index. A position is the number of index images that
score above the image, plus those that tie with it and have a lower id (a stable sort's
order): counted block by block, in the memory of one block, with the top-k of
`top_k_by_similarity` from the same products.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import numpy as np

from delf_core.retrieval.top_k import (
    DEFAULT_MEMORY_BYTES,
    Rows,
    RunningTopK,
    TopK,
    block_rows,
    read_rows,
)


@dataclasses.dataclass(frozen=True)
class RankedSearch:
    """The top-k per query, and where each of its target ids stands in its full ranking.

    Attributes:
        top: ids and similarities of the best k, best first.
        positions: Per query, int64 0-based positions of `targets[q]`, in that order.
    """

    top: TopK
    positions: list[np.ndarray]


def _blocks_holding(ids: np.ndarray, num_index: int, index_rows: int) -> list[int]:
    return sorted({int(i) // index_rows * index_rows for i in ids if 0 <= i < num_index})


def _gather(similarities: np.ndarray, start: int, targets: list[np.ndarray], into: list) -> None:
    """Copies each query's similarities to its targets that lie in this block."""
    end = start + similarities.shape[1]
    for row, ids in enumerate(targets):
        inside = (ids >= start) & (ids < end)
        into[row][inside] = similarities[row, ids[inside] - start]


def _count_before(
    similarities: np.ndarray,
    start: int,
    targets: list[np.ndarray],
    thresholds: list[np.ndarray],
    counts: list[np.ndarray],
) -> None:
    """Adds, per target, the block's ids that rank before it: above, or tied and lower."""
    for row, ids in enumerate(targets):
        if not len(ids):
            continue
        values = similarities[row]
        wanted = thresholds[row]
        columns = np.flatnonzero(values >= wanted.min())
        # A stable sort keeps equal similarities in column (id) order.
        order = np.argsort(values[columns], kind="stable")
        ranked, ranked_columns = values[columns][order], columns[order]
        low = np.searchsorted(ranked, wanted, side="left")
        high = np.searchsorted(ranked, wanted, side="right")
        counts[row] += len(ranked) - high
        for j in np.flatnonzero(high > low):
            tied = ranked_columns[low[j] : high[j]]
            counts[row][j] += np.searchsorted(tied, ids[j] - start, side="left")


def search_with_positions(
    queries: Rows,
    index: Rows,
    k: int,
    targets: Sequence[np.ndarray],
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
    on_block: Callable[[int, int], None] | None = None,
) -> RankedSearch:
    """`top_k_by_similarity`, and the full-ranking position of each query's targets.

    Per query block, the index blocks that hold its targets are multiplied first, for
    the targets' similarities; the last of them is kept and counted at once, the others
    are multiplied again in the pass that counts and keeps the top-k (the same blocks
    give the same products, so the counts agree with the similarities bit for bit).

    Args:
        queries: [Q, D] descriptors.
        index: [N, D] descriptors (any `Rows`).
        k: ids kept per query (at most N).
        targets: Per query, distinct index ids (0 <= id < N) to place.
        memory_bytes: Bound on the working memory, as `top_k_by_similarity`'s.
        on_block: Called with (similarities done, similarities in all) after each block.

    Returns:
        The top-k and the positions.

    Raises:
        ValueError: As `top_k_by_similarity`; a target id outside the index.
    """
    num_queries, dim = queries.shape
    num_index = index.shape[0]
    if len(targets) != num_queries:
        raise ValueError(f"{len(targets)} target lists for {num_queries} queries")
    targets = [np.asarray(ids, np.int64) for ids in targets]
    for ids in targets:
        if len(ids) and (ids.min() < 0 or ids.max() >= num_index):
            raise ValueError(f"target ids must be in 0..{num_index - 1}")
    if k < 1:
        raise ValueError(f"k={k}: must be at least 1")
    if index.shape[1] != dim:
        raise ValueError(
            f"queries have {dim} values per descriptor but the index has {index.shape[1]}"
        )
    k = min(k, num_index)
    query_rows, index_rows = block_rows(num_queries, max(num_index, 1), dim, k, memory_bytes)
    ids = np.zeros((num_queries, k), np.int64)
    scores = np.zeros((num_queries, k), np.float32)
    positions: list[np.ndarray] = []
    product = np.empty((min(query_rows, num_queries), min(index_rows, num_index)), np.float32)
    total, done = num_queries * num_index, 0
    for q_start in range(0, num_queries, query_rows):
        block = read_rows(queries, q_start, query_rows)
        wanted = targets[q_start : q_start + len(block)]
        thresholds = [np.zeros(len(t), np.float32) for t in wanted]
        counts = [np.zeros(len(t), np.int64) for t in wanted]

        def multiply(i_start: int, block: np.ndarray = block) -> np.ndarray:
            rows = read_rows(index, i_start, index_rows)
            similarities = product[: len(block), : len(rows)]
            np.matmul(block, rows.T, out=similarities)
            return similarities

        every_target = np.concatenate([*wanted, np.zeros(0, np.int64)])
        holding = _blocks_holding(every_target, num_index, index_rows)
        for i_start in holding:
            _gather(multiply(i_start), i_start, wanted, thresholds)
        # The last block multiplied is still in `product`: counted first, not redone.
        kept = holding[-1] if holding else None
        order = ([kept] if holding else []) + [
            i for i in range(0, num_index, index_rows) if i != kept
        ]
        best = RunningTopK(len(block), k)
        for i_start in order:
            if i_start == kept:
                similarities = product[: len(block), : min(index_rows, num_index - i_start)]
            else:
                similarities = multiply(i_start)
            best.add(similarities, i_start)
            _count_before(similarities, i_start, wanted, thresholds, counts)
            done += similarities.size
            del similarities
            if on_block is not None:
                on_block(done, total)
        found = slice(q_start, q_start + len(block))
        ids[found], scores[found] = best.result()
        positions.extend(counts)
    return RankedSearch(TopK(ids, scores), positions)
