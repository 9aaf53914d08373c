"""Whether a metrics.txt is current for its inputs, and performing retrieval if not.

`delf perform_retrieval` and the flow's task both go through
`perform_retrieval_if_stale`: metrics.txt computed from the same flags, ground truth
and features is kept, and says so.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable

from delf_core import __version__, manifests, storage
from delf_core.features.record import features_fingerprint
from delf_core.retrieval.metrics import SavedMetrics, parse_metrics
from delf_core.retrieval.perform import (
    METRICS_NAME,
    RetrievalConfig,
    RetrievalResult,
    perform_retrieval,
)
from delf_core.retrieval.rerank import QueryProgress

# Written beside metrics.txt, last: what the metrics were computed from.
MANIFEST_NAME = "perform_retrieval_manifest.json"


@dataclasses.dataclass(frozen=True)
class RetrievalOutcome:
    """What `perform_retrieval_if_stale` did.

    Attributes:
        computed: The metrics were computed; False when metrics.txt was current.
        metrics_path: The metrics.txt.
        saved: The metrics as the file holds them (percentages to 2 decimals).
        text: The file's text.
        timings: Seconds each stage took, when the metrics were computed (now or
            by the run that wrote them).
        result: The computed metrics at full precision; None when not computed.
    """

    computed: bool
    metrics_path: str
    saved: SavedMetrics
    text: str
    timings: dict[str, float]
    result: RetrievalResult | None = None


def computed_from(config: RetrievalConfig) -> dict:
    """What metrics.txt depends on: flags, ground truth and both features folders."""
    flags = dataclasses.asdict(config)
    # How many processes re-rank, and in how much memory the search runs, do not
    # change the ranking.
    flags.pop("num_workers")
    flags.pop("search_memory_bytes")
    flags["distractor_features_dir"] = list(config.distractor_features_dir)  # as JSON reads it
    inputs = {
        "flags": flags,
        "ground_truth": manifests.sha256_file(config.dataset_file_path),
        "query_features": features_fingerprint(config.query_features_dir),
        "index_features": features_fingerprint(config.index_features_dir),
    }
    if config.distractor_features_dir:
        inputs["distractor_features"] = [
            features_fingerprint(folder) for folder in config.distractor_features_dir
        ]
    if config.distractor_list:
        inputs["distractor_list"] = manifests.sha256_file(config.distractor_list)
    return inputs


def retrieval_identity(config: RetrievalConfig) -> str:
    """`computed_from` as sorted-key JSON: equal inputs give equal identities."""
    return json.dumps(computed_from(config), sort_keys=True)


def _manifest(config: RetrievalConfig) -> dict | None:
    manifest = manifests.read_json(storage.join(config.output_dir, MANIFEST_NAME))
    return manifest if isinstance(manifest, dict) else None


def retrieval_is_current(config: RetrievalConfig) -> bool:
    """metrics.txt parses, and the manifest beside it names these inputs."""
    manifest = _manifest(config)
    text = manifests.read_text(storage.join(config.output_dir, METRICS_NAME))
    if manifest is None or text is None:
        return False
    try:
        parse_metrics(text)
    except ValueError:  # half-written or edited by hand: not ours
        return False
    return manifest.get("computed_from") == computed_from(config)


def perform_retrieval_if_stale(
    config: RetrievalConfig,
    on_query: QueryProgress | None = None,
    on_block: Callable[[int, int], None] | None = None,
) -> RetrievalOutcome:
    """Performs retrieval unless metrics.txt is current; then writes its manifest, last.

    Args:
        config: The flags of `delf perform_retrieval`.
        on_query, on_block: See `perform_retrieval`.

    Returns:
        What was done, and the metrics as metrics.txt holds them.

    Raises:
        FileNotFoundError, ValueError: See `perform_retrieval`.
    """
    metrics_path = storage.join(config.output_dir, METRICS_NAME)
    result = None
    if not retrieval_is_current(config):
        inputs = computed_from(config)
        result = perform_retrieval(config, on_query, on_block)
        # Last, so that it never vouches for a metrics.txt that is not all there.
        manifests.write_json(
            storage.join(config.output_dir, MANIFEST_NAME),
            {
                "step": "perform_retrieval",
                "delf_version": __version__,
                "computed_from": inputs,
                "metrics": METRICS_NAME,
                "timings": result.timings,
            },
        )
    text = manifests.read_text(metrics_path) or ""
    manifest = _manifest(config) or {}
    return RetrievalOutcome(
        computed=result is not None,
        metrics_path=metrics_path,
        saved=parse_metrics(text, metrics_path),
        text=text,
        timings=manifest.get("timings", {}),
        result=result,
    )
