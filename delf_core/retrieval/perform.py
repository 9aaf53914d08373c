"""The perform_retrieval step: global ranking, optional re-ranking, Revisited mAP."""

from __future__ import annotations

import dataclasses
import logging
import time

import numpy as np

from delf_core import storage
from delf_core.retrieval import metrics
from delf_core.retrieval.rerank import (
    QueryProgress,
    RerankConfig,
    rerank_by_geometric_verification,
)
from delf_core.retrieval.search import (
    descriptor_dim,
    global_descriptors,
    local_features_reader,
    rank_by_similarity,
    read_local_features,
)
from delf_core.revisited_dataset import read_dataset_file
from delf_core.step_config import option

log = logging.getLogger(__name__)
METRICS_NAME = "metrics.txt"
# perform_retrieval reports these two of the three protocols.
PROTOCOLS = ("medium", "hard")


@dataclasses.dataclass(frozen=True)
class RetrievalConfig:
    """The flags of the original perform_retrieval, with its defaults, plus `num_workers`."""

    dataset_file_path: str = option("/tmp/gnd_roxford5k.mat", "Revisited gnd_*.mat or .pkl")
    query_features_dir: str = option(
        "/tmp/features/query", "holds <query>.delg_global (and .delg_local)"
    )
    index_features_dir: str = option(
        "/tmp/features/index", "holds <index image>.delg_global (and .delg_local)"
    )
    use_geometric_verification: bool = option(
        False, "re-rank the top 100 by local-feature RANSAC inliers"
    )
    local_descriptor_matching_threshold: float = option(
        1.0,
        "local descriptor distance bound (or ratio, with --use_ratio_test)",
        aliases=("local_feature_distance_threshold",),
    )
    ransac_residual_threshold: float = option(20.0, "RANSAC inlier distance in pixels")
    use_ratio_test: bool = option(False, "ratio test for local matches")
    output_dir: str = option("/tmp/retrieval", "metrics.txt goes here")
    num_workers: int | None = option(
        None, "processes re-ranking in parallel; none: all cores", minimum=1
    )

    def rerank_config(self) -> RerankConfig:
        return RerankConfig(
            descriptor_matching_threshold=self.local_descriptor_matching_threshold,
            ransac_residual_threshold=self.ransac_residual_threshold,
            use_ratio_test=self.use_ratio_test,
            num_workers=self.num_workers,
        )


@dataclasses.dataclass(frozen=True)
class RetrievalResult:
    """mAP, mean precisions and recalls at `metrics.PR_RANKS` per reported protocol."""

    mean_average_precision: dict[str, float]
    mean_precisions: dict[str, np.ndarray]
    mean_recalls: dict[str, np.ndarray]
    metrics_path: str
    timings: dict[str, float]


def perform_retrieval(
    config: RetrievalConfig, on_query: QueryProgress | None = None
) -> RetrievalResult:
    """Ranks the index for every query and writes `<output_dir>/metrics.txt`.

    Args:
        config: The flags.
        on_query: Called with (queries verified, queries) while re-ranking.

    Returns:
        The metrics, as written, and the seconds each stage took.

    Raises:
        FileNotFoundError: naming the first missing features file.
        ValueError: one line naming the file: a bad dataset file, an unreadable or
            damaged features file, or descriptors of different sizes.
    """
    timings = {}
    started = time.perf_counter()
    dataset = read_dataset_file(config.dataset_file_path)
    _, medium, hard = metrics.parse_easy_medium_hard(dataset.ground_truth)
    truth = {"medium": medium, "hard": hard}
    queries = global_descriptors(config.query_features_dir, dataset.query_list)
    index = global_descriptors(config.index_features_dir, dataset.index_list)
    timings["read_global_s"] = time.perf_counter() - started

    started = time.perf_counter()
    ranks, similarities = rank_by_similarity(queries, index)
    timings["global_search_s"] = time.perf_counter() - started
    rankings = {protocol: ranks for protocol in PROTOCOLS}

    if config.use_geometric_verification:
        started = time.perf_counter()
        query_features = read_local_features(config.query_features_dir, dataset.query_list)
        # An index file of another size is named as it is read, not met inside a worker.
        dim = descriptor_dim(query_features, config.query_features_dir, dataset.query_list)
        reranked = rerank_by_geometric_verification(
            ranks,
            similarities,
            {protocol: [gt["junk"] for gt in truth[protocol]] for protocol in PROTOCOLS},
            query_features,
            local_features_reader(config.index_features_dir, dataset.index_list, dim),
            config.rerank_config(),
            on_query,
        )
        timings["rerank_s"] = time.perf_counter() - started
        for protocol in PROTOCOLS:
            rankings[f"{protocol}_after_gv"] = reranked[protocol]

    mean_ap, mean_p, mean_r = {}, {}, {}
    for name, sorted_ids in rankings.items():
        protocol = name.removesuffix("_after_gv")
        scores = metrics.compute_metrics(sorted_ids, truth[protocol], metrics.PR_RANKS)
        mean_ap[name] = scores.mean_average_precision
        mean_p[name], mean_r[name] = scores.mean_precisions, scores.mean_recalls
        log.info("%s: mAP=%.2f", name, 100 * scores.mean_average_precision)
    fs, out = storage.resolve(config.output_dir)
    fs.makedirs(out, exist_ok=True)
    path = storage.join(config.output_dir, METRICS_NAME)
    metrics.save_metrics_file(mean_ap, mean_p, mean_r, metrics.PR_RANKS, path)
    return RetrievalResult(mean_ap, mean_p, mean_r, path, timings)
