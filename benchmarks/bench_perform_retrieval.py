"""Benchmark of retrieval: global search and re-ranking, parallel against one core."""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
from threadpoolctl import threadpool_limits

from delf_core.features.feature_io import LocalFeatures
from delf_core.retrieval.rerank import RerankConfig, rerank_by_geometric_verification
from delf_core.retrieval.top_k import top_k_by_similarity


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_queries", type=int, default=70, help="Revisited Oxford's")
    parser.add_argument("--num_index", type=int, default=5000, help="about Oxford 5k")
    parser.add_argument("--num_features", type=int, default=1000, help="per image")
    parser.add_argument("--dim", type=int, default=128, help="DELG local descriptors")
    parser.add_argument("--global_dim", type=int, default=2048)
    parser.add_argument("--positives", type=int, default=5, help="true matches per query")
    parser.add_argument("--vocabulary", type=int, default=2000, help="shared visual words")
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    return parser.parse_args(argv)


class Scene:
    """Generated features: descriptors are noisy copies of shared "visual words", so
    every pair has hundreds of putative matches (RANSAC runs in full), and a query's
    positives see its features under an affine map."""

    def __init__(self, args: argparse.Namespace):
        self.args = args
        rng = np.random.default_rng(0)
        self.words = self._unit(rng.normal(size=(args.vocabulary, args.dim)))
        self.queries = [
            self._image(np.random.default_rng(1_000_000 + q)) for q in range(args.num_queries)
        ]

    @staticmethod
    def _unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def _image(self, rng: np.random.Generator) -> LocalFeatures:
        n = self.args.num_features
        words = self.words[rng.integers(len(self.words), size=n)]
        descriptors = self._unit(words + 0.04 * rng.normal(size=words.shape))
        locations = rng.uniform([0, 0], [768, 1024], (n, 2)).astype(np.float32)
        ones = np.ones(n, np.float32)
        return LocalFeatures(locations, ones, descriptors, 200 * ones, 0 * ones)

    def positive_of(self, image_id: int) -> int | None:
        query, k = divmod(image_id, self.args.positives)
        return query if query < self.args.num_queries else None

    def index_image(self, image_id: int) -> LocalFeatures:
        rng = np.random.default_rng(image_id)
        image = self._image(rng)
        query = self.positive_of(image_id)
        if query is None:
            return image
        # Half of the query's features, seen under an affine map, with 2 px noise.
        source = self.queries[query]
        keep = rng.permutation(len(source.locations))[: len(source.locations) // 2]
        affine = np.array([[0.9, 0.1], [-0.05, 1.1]], np.float32)
        moved = source.locations[keep] @ affine.T + [20, -30] + rng.normal(0, 2, (len(keep), 2))
        image.locations[: len(keep)] = moved
        image.descriptors[: len(keep)] = source.descriptors[keep]
        return image

    def global_descriptors(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(7)
        queries = self._unit(rng.normal(size=(self.args.num_queries, self.args.global_dim)))
        index = self._unit(rng.normal(size=(self.args.num_index, self.args.global_dim)))
        for image_id in range(self.args.num_index):
            query = self.positive_of(image_id)
            if query is not None:
                # Positives are similar enough to be in the top 100, not always first.
                index[image_id] = self._unit((queries[query] + 20 * index[image_id])[None])[0]
        return queries, index


def rerank_seconds(scene, ranks, similarities, workers: int) -> tuple[float, dict]:
    junk = {p: [np.zeros(0, np.int64)] * len(ranks) for p in ("medium", "hard")}
    start = time.perf_counter()
    reranked = rerank_by_geometric_verification(
        ranks, similarities, junk, scene.queries, scene.index_image,
        RerankConfig(num_workers=workers),
    )  # fmt: skip
    return time.perf_counter() - start, reranked


def first_positive_rank(ranks: np.ndarray, scene: Scene) -> float:
    positions = []
    for q, row in enumerate(ranks):
        hits = [i for i, image_id in enumerate(row) if scene.positive_of(int(image_id)) == q]
        positions.append(hits[0] if hits else len(row))
    return float(np.mean(positions))


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    scene = Scene(args)
    queries, index = scene.global_descriptors()
    print(
        f"bench_perform_retrieval: {args.num_queries} queries x {args.num_index} index images, "
        f"{args.num_features} local features of {args.dim}-d each, {args.workers} workers"
    )
    start = time.perf_counter()
    top = top_k_by_similarity(queries, index, RerankConfig().num_to_rerank)
    ranks, similarities = top.ids, top.scores
    search_s = time.perf_counter() - start
    print(f"global_search_total_s {search_s:.3f}")
    print(f"global_search_ms_per_query {1e3 * search_s / args.num_queries:.2f}")

    parallel_s, reranked = rerank_seconds(scene, ranks, similarities, args.workers)
    with threadpool_limits(1):  # one core: no BLAS threads either
        one_core_s, serial = rerank_seconds(scene, ranks, similarities, 1)
    assert all(np.array_equal(reranked[p], serial[p]) for p in reranked)
    print(f"rerank_parallel_total_s {parallel_s:.1f}")
    print(f"rerank_parallel_s_per_query {parallel_s / args.num_queries:.2f}")
    print(f"rerank_one_core_total_s {one_core_s:.1f}")
    print(f"rerank_one_core_s_per_query {one_core_s / args.num_queries:.2f}")
    speedup = one_core_s / parallel_s
    print(f"rerank_parallel_speedup {speedup:.2f}")
    print(f"ratio_speedup_to_workers {speedup / args.workers:.2f}")
    print(f"mean_first_positive_rank_before {first_positive_rank(ranks, scene):.2f}")
    print(f"mean_first_positive_rank_after {first_positive_rank(reranked['medium'], scene):.2f}")


if __name__ == "__main__":
    main()
