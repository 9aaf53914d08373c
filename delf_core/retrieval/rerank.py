"""Re-ranking by geometric verification: local-feature RANSAC inliers over the top results."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from delf_core.features.feature_io import LocalFeatures
from delf_core.matching import putative_matches, ransac_affine


@dataclasses.dataclass(frozen=True)
class RerankConfig:
    """Geometric verification settings; defaults are perform_retrieval's.

    Attributes:
        num_to_rerank: Top non-junk results verified per query and protocol.
        descriptor_matching_threshold: Nearest-neighbour distance bound (or ratio).
        ransac_residual_threshold: Inlier distance in pixels.
        use_ratio_test: Lowe's ratio test instead of the distance bound.
        ransac_seed: RANSAC seed, for repeatable scores.
        max_trials: RANSAC samples.
        min_putative_matches: Fewer matches than this score 0 without RANSAC.
        num_workers: Processes verifying queries in parallel; None for all cores.
    """

    num_to_rerank: int = 100
    descriptor_matching_threshold: float = 1.0
    ransac_residual_threshold: float = 20.0
    use_ratio_test: bool = False
    ransac_seed: int = 0
    max_trials: int = 1000
    min_putative_matches: int = 4
    num_workers: int | None = None


def count_inliers(query: LocalFeatures, index: LocalFeatures, config: RerankConfig) -> int:
    """RANSAC inliers of an affine map from the index image's to the query's features."""
    if not len(query.descriptors) or not len(index.descriptors):
        return 0
    matches = putative_matches(
        index.descriptors,
        query.descriptors,
        config.descriptor_matching_threshold,
        use_ratio_test=config.use_ratio_test,
    )
    if len(matches) < config.min_putative_matches:
        return 0
    result = ransac_affine(
        index.locations[matches.indices_1],
        query.locations[matches.indices_2],
        residual_threshold=config.ransac_residual_threshold,
        max_trials=config.max_trials,
        seed=config.ransac_seed,
    )
    return result.num_inliers


def candidates(top_ids: np.ndarray, junk: np.ndarray, count: int) -> np.ndarray:
    """The first `count` index ids of `top_ids` that are not junk."""
    kept = top_ids[~np.isin(top_ids, junk)]
    return kept[:count]


def reorder(top_ids: np.ndarray, top_scores: np.ndarray, inliers: dict[int, int]) -> np.ndarray:
    """The top ids by descending (inliers, global similarity); unverified ones have 0.

    `top_ids` is in global order (descending similarity, equal ones lower id first), and
    the sort is stable, so ids without inliers keep that order among themselves, and
    every id past the top keeps its place in the full ranking.
    """
    counts = np.array([inliers.get(int(i), 0) for i in top_ids], np.int64)
    # lexsort sorts by the last key first; negate both for descending order.
    return top_ids[np.lexsort((-top_scores, -counts))]


# Read by forked workers: set before the pool starts, inherited without pickling.
_SHARED: dict = {}


def _verify_query(task: tuple[int, np.ndarray]) -> tuple[int, list[int]]:
    query_id, index_ids = task
    query = _SHARED["queries"][query_id]
    index = _SHARED["index"]
    config = _SHARED["config"]
    return query_id, [count_inliers(query, index[int(i)], config) for i in index_ids]


def _one_blas_thread() -> None:
    # One process per core: BLAS threads on top would oversubscribe the cores.
    threadpool_limits(1)


def _pool(workers: int):
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        return ProcessPoolExecutor(
            workers,
            mp_context=multiprocessing.get_context("fork"),
            initializer=_one_blas_thread,
        )
    return ThreadPoolExecutor(1)


# (queries verified, queries): how a caller follows the re-ranking.
QueryProgress = Callable[[int, int], None]


def rerank_by_geometric_verification(
    top_ids: np.ndarray,
    top_scores: np.ndarray,
    junk_per_protocol: dict[str, Sequence[np.ndarray]],
    query_features: Sequence[LocalFeatures],
    load_index_features: Callable[[int], LocalFeatures],
    config: RerankConfig,
    on_query: QueryProgress | None = None,
) -> dict[str, np.ndarray]:
    """Re-ranks every query's top results for each protocol by their inlier counts.

    Each (query, index image) pair is verified once, whichever protocols list it, and
    each index image's features are read once, however many queries it serves.

    Args:
        top_ids: [Q, K] each query's best index ids by descending global similarity
            (equal similarities lower id first), K at least `num_to_rerank` plus the
            query's junk ids among them, so that enough non-junk ones are verified.
        top_scores: [Q, K] their global similarities.
        junk_per_protocol: Per protocol name, each query's junk index ids, which are
            left out of the verified candidates.
        query_features: Each query's local features.
        load_index_features: Reads one index image's local features by id.
        config: Verification settings.
        on_query: Called with (queries verified, queries) after each query.

    Returns:
        Per protocol, the [Q, K] re-ranked top ids: the first K of the re-ranked full
        ranking, past which every id keeps its global place.
    """
    num_queries = len(top_ids)
    wanted: dict[int, set[int]] = {q: set() for q in range(num_queries)}
    chosen = {}
    for protocol, junk in junk_per_protocol.items():
        chosen[protocol] = [
            candidates(top_ids[q], np.asarray(junk[q]), config.num_to_rerank)
            for q in range(num_queries)
        ]
        for q, ids in enumerate(chosen[protocol]):
            wanted[q].update(int(i) for i in ids)
    needed = sorted(set().union(*wanted.values()))
    with ThreadPoolExecutor(min(16, (os.cpu_count() or 1) * 4)) as readers:
        index = dict(zip(needed, readers.map(load_index_features, needed), strict=True))

    workers = config.num_workers or os.cpu_count() or 1
    _SHARED.update(queries=query_features, index=index, config=config)
    tasks = [(q, np.array(sorted(ids), np.int64)) for q, ids in wanted.items() if ids]
    inliers: dict[int, dict[int, int]] = {q: {} for q in range(num_queries)}
    try:
        if on_query is not None:
            on_query(0, len(tasks))
        with _pool(workers) as pool:
            for done, (q, counts) in enumerate(pool.map(_verify_query, tasks), start=1):
                inliers[q] = dict(zip(sorted(wanted[q]), counts, strict=True))
                if on_query is not None:
                    on_query(done, len(tasks))
    finally:
        _SHARED.clear()
    return {
        protocol: np.stack(
            [
                reorder(
                    top_ids[q],
                    top_scores[q],
                    {int(i): inliers[q][int(i)] for i in chosen[protocol][q]},
                )
                for q in range(num_queries)
            ]
        )
        for protocol in chosen
    }
