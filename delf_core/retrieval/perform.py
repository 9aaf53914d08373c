"""The perform_retrieval step: global ranking, optional re-ranking, Revisited mAP."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Sequence

import numpy as np

from delf_core import storage
from delf_core.features.feature_io import LocalFeatures
from delf_core.retrieval import metrics
from delf_core.retrieval.distractors import (
    DistractorDescriptors,
    Distractors,
    StackedRows,
    find_distractors,
)
from delf_core.retrieval.positions import search_with_positions
from delf_core.retrieval.rerank import (
    QueryProgress,
    RerankConfig,
    rerank_by_geometric_verification,
)
from delf_core.retrieval.search import (
    descriptor_dim,
    global_descriptors,
    local_features_reader,
    read_local_features,
)
from delf_core.retrieval.top_k import DEFAULT_MEMORY_BYTES
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
    distractor_features_dir: tuple[str, ...] = option(
        (),
        "comma-separated folders of distractor .delg_global (and .delg_local, for "
        "--use_geometric_verification) files, ranked after the index (Revisited +1M)",
    )
    distractor_list: str | None = option(
        None,
        "distractor image names one a line (revisitop1m.txt), in the one "
        "--distractor_features_dir; none: every .delg_global file under the folders",
    )
    search_memory_bytes: int = option(
        DEFAULT_MEMORY_BYTES,
        "bound on the global search's working memory, whatever the index size",
        minimum=1,
    )
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


def _protocol_targets(truth: dict[str, list[dict]]) -> list[np.ndarray]:
    """Per query, every id any protocol counts as positive or junk."""
    per_query = zip(*(truth[protocol] for protocol in PROTOCOLS), strict=True)
    return [
        np.unique(np.concatenate([part for gt in entries for part in (gt["ok"], gt["junk"])]))
        for entries in per_query
    ]


def _metrics(
    truth: list[dict],
    targets: list[np.ndarray],
    positions: list[np.ndarray],
    num_ranked: int,
    top_ids: np.ndarray | None = None,
) -> metrics.Metrics:
    """The protocol's metrics from each target's position in its query's ranking.

    With `top_ids` (a re-ranked top), targets among them stand where they now are, and
    the others keep their global positions (re-ranking moves ids within the top only).
    """
    positives, junk = [], []
    for q, gt in enumerate(truth):
        where = positions[q].copy()
        if top_ids is not None:
            inside = np.flatnonzero(np.isin(targets[q], top_ids[q]))
            order = np.argsort(top_ids[q])
            where[inside] = order[np.searchsorted(top_ids[q], targets[q][inside], sorter=order)]
        ok, bad = np.unique(gt["ok"]), np.unique(gt["junk"])
        positives.append(where[np.searchsorted(targets[q], ok)] if len(ok) else None)
        junk.append(where[np.searchsorted(targets[q], bad)])
    return metrics.compute_metrics_from_positions(positives, junk, num_ranked, metrics.PR_RANKS)


def _local_reader(
    config: RetrievalConfig,
    index_list: Sequence[str],
    distractors: Distractors | None,
    dim: int | None,
) -> Callable[[int], LocalFeatures]:
    """id -> local features: the index's, then the distractors' (ids N.., their own files)."""
    index = local_features_reader(config.index_features_dir, index_list, dim)
    if distractors is None:
        return index
    per_folder = [
        local_features_reader(folder, distractors.names, dim) for folder in distractors.folders
    ]

    def read(image_id: int) -> LocalFeatures:
        if image_id < len(index_list):
            return index(image_id)
        image = image_id - len(index_list)
        return per_folder[distractors.folder_of[image]](image)

    return read


def perform_retrieval(
    config: RetrievalConfig,
    on_query: QueryProgress | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> RetrievalResult:
    """Ranks the index (and distractors) for every query and writes `<output_dir>/metrics.txt`.

    No [queries x index] matrix is built: the global search keeps each query's top
    results and counts where its positive and junk images stand, block by block within
    `search_memory_bytes`, which is all the metrics need.

    Args:
        config: The flags.
        on_query: Called with (queries verified, queries) while re-ranking.
        on_block: Called with (similarities done, similarities) while searching.

    Returns:
        The metrics, as written, and the seconds each stage took.

    Raises:
        FileNotFoundError: naming the first missing features file or folder.
        ValueError: one line naming the file: a bad dataset or distractor list, an
            unreadable or damaged features file, or descriptors of different sizes.
    """
    timings = {}
    started = time.perf_counter()
    dataset = read_dataset_file(config.dataset_file_path)
    _, medium, hard = metrics.parse_easy_medium_hard(dataset.ground_truth)
    truth = {"medium": medium, "hard": hard}
    queries = global_descriptors(config.query_features_dir, dataset.query_list)
    index = global_descriptors(config.index_features_dir, dataset.index_list)
    distractors = None
    ranked = index
    if config.distractor_features_dir or config.distractor_list:
        distractors = find_distractors(config.distractor_features_dir, config.distractor_list)
        ranked = StackedRows([index, DistractorDescriptors(distractors, queries.shape[1])])
        log.info("%d distractors ranked after the %d index images", len(distractors), len(index))
    num_ranked = ranked.shape[0]
    timings["read_global_s"] = time.perf_counter() - started

    started = time.perf_counter()
    targets = _protocol_targets(truth)
    rerank = config.rerank_config()
    # Enough of the top to verify num_to_rerank non-junk ids under every protocol.
    most_junk = max(
        (len(np.unique(gt["junk"])) for protocol in PROTOCOLS for gt in truth[protocol]),
        default=0,
    )
    search = search_with_positions(
        queries,
        ranked,
        rerank.num_to_rerank + (most_junk if config.use_geometric_verification else 0),
        targets,
        config.search_memory_bytes,
        on_block,
    )
    timings["global_search_s"] = time.perf_counter() - started

    results = {
        protocol: _metrics(truth[protocol], targets, search.positions, num_ranked)
        for protocol in PROTOCOLS
    }
    if config.use_geometric_verification:
        started = time.perf_counter()
        query_features = read_local_features(config.query_features_dir, dataset.query_list)
        # An index file of another size is named as it is read, not met inside a worker.
        dim = descriptor_dim(query_features, config.query_features_dir, dataset.query_list)
        reranked = rerank_by_geometric_verification(
            search.top.ids,
            search.top.scores,
            {protocol: [gt["junk"] for gt in truth[protocol]] for protocol in PROTOCOLS},
            query_features,
            _local_reader(config, dataset.index_list, distractors, dim),
            rerank,
            on_query,
        )
        timings["rerank_s"] = time.perf_counter() - started
        for protocol in PROTOCOLS:
            results[f"{protocol}_after_gv"] = _metrics(
                truth[protocol], targets, search.positions, num_ranked, reranked[protocol]
            )

    mean_ap, mean_p, mean_r = {}, {}, {}
    for name, scores in results.items():
        mean_ap[name] = scores.mean_average_precision
        mean_p[name], mean_r[name] = scores.mean_precisions, scores.mean_recalls
        log.info("%s: mAP=%.2f", name, 100 * scores.mean_average_precision)
    fs, out = storage.resolve(config.output_dir)
    fs.makedirs(out, exist_ok=True)
    path = storage.join(config.output_dir, METRICS_NAME)
    metrics.save_metrics_file(mean_ap, mean_p, mean_r, metrics.PR_RANKS, path)
    return RetrievalResult(mean_ap, mean_p, mean_r, path, timings)
