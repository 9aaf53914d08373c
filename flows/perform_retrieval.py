"""The perform_retrieval step as Prefect tasks, and perform_retrieval: the test split's mAP."""

from __future__ import annotations

import json
import math
import time
from typing import Any

from prefect import flow, get_run_logger, task

from delf_core import manifests, storage
from delf_core.export.config import LOCAL_AND_GLOBAL
from delf_core.export.trained import export_config
from delf_core.gldv2 import layout
from delf_core.gldv2.revisited import write_revisited_ground_truth
from delf_core.retrieval.current import (
    perform_retrieval_if_stale,
    retrieval_identity,
    retrieval_is_current,
)
from delf_core.retrieval.metrics import SavedMetrics
from delf_core.retrieval.perform import RetrievalConfig
from delf_core.training.config import TrainConfig
from flows.caching import OutputsStandCache
from flows.evaluation_configs import EXPORT_NAME, PerformRetrievalConfig, model_output_dir
from flows.export import export_task
from flows.extract_dataset import (
    DELG_CONFIG_NAME,
    INDEX,
    QUERY,
    extract_dataset_task,
)
from flows.progress import step_progress
from flows.retries import TRANSIENT_IO_RETRIES
from flows.run_summary import COUNTED
from flows.summary import publish_summary

# What the Revisited ground truth of a download is made of (delf_core.gldv2.revisited).
_GROUND_TRUTH_SOURCES = ((layout.INDEX, "index.csv"), (layout.TEST, layout.RETRIEVAL_SOLUTION_NAME))


def _ground_truth_identity(inputs: dict[str, Any]) -> str:
    sources = {
        f"{split}/{name}": manifests.sha256_file(storage.join(inputs["dataset_dir"], split, name))
        for split, name in _GROUND_TRUTH_SOURCES
    }
    return json.dumps({**sources, "output_path": inputs["output_path"]}, sort_keys=True)


@task(
    name="make_revisited_ground_truth",
    tags=["perform_retrieval"],
    **COUNTED,
    task_run_name="make_revisited_ground_truth",
    cache_policy=OutputsStandCache(
        identity=_ground_truth_identity,
        outputs_stand=lambda inputs: storage.exists(inputs["output_path"]),
        prefix="make_revisited_ground_truth",
    ),
    **TRANSIENT_IO_RETRIES,
)
def make_revisited_ground_truth_task(dataset_dir: str, output_path: str) -> dict:
    """Writes the downloaded test queries against the index as a Revisited `gnd_*.pkl`.

    Returns:
        path, the numbers of queries and index images, and the file's sha256.
    """
    truth = write_revisited_ground_truth(dataset_dir, output_path)
    return {
        "path": output_path,
        "queries": len(truth["qimlist"]),
        "index": len(truth["imlist"]),
        "sha256": manifests.sha256_file(output_path),
    }


def _finite(value: float) -> float | None:
    # A protocol no query has positives for (hard, on the mini benchmark) is NaN.
    return None if math.isnan(value) else float(value)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def metrics_summary(saved: SavedMetrics) -> dict:
    """metrics.txt as fractions, NaN (no query with positives) as None."""
    return {
        "mean_average_precision": {
            name: _finite(value) for name, value in saved.mean_average_precision.items()
        },
        "mean_precisions": {
            name: [_finite(v) for v in values] for name, values in saved.mean_precisions.items()
        },
        "mean_recalls": {
            name: [_finite(v) for v in values] for name, values in saved.mean_recalls.items()
        },
        "pr_ranks": list(saved.pr_ranks),
    }


def _protocol_rows(summary: dict) -> list[dict]:
    """Per protocol: mAP and mean precision at each rank, in %."""
    return [
        {
            "protocol": name,
            "mAP": _percent(value),
            **{
                f"mP@{rank}": _percent(precision)
                for rank, precision in zip(
                    summary["pr_ranks"], summary["mean_precisions"][name], strict=True
                )
            },
        }
        for name, value in sorted(summary["mean_average_precision"].items())
    ]


@task(
    name="perform_retrieval",
    tags=["perform_retrieval"],
    **COUNTED,
    task_run_name="perform_retrieval",
    cache_policy=OutputsStandCache(
        identity=lambda inputs: retrieval_identity(inputs["config"]),
        outputs_stand=lambda inputs: retrieval_is_current(inputs["config"]),
        prefix="perform_retrieval",
    ),
    **TRANSIENT_IO_RETRIES,
)
def perform_retrieval_task(config: RetrievalConfig) -> dict:
    """Ranks the index for every query, re-ranks if asked, writes metrics.txt.

    A metrics.txt computed from the same features, ground truth and flags is kept
    (Prefect may have lost its record: DESIGN.md rule 5).

    Args:
        config: The flags of `delf perform_retrieval`.

    Returns:
        metrics_path, use_geometric_verification, per protocol the mAP and mean
        precisions and recalls at `pr_ranks` as fractions (None where NaN), and the
        seconds each stage took when it ran.
    """
    started = time.monotonic()
    # Re-ranking verifies every query's top results: the slow part on GLDv2.
    outcome = perform_retrieval_if_stale(
        config,
        on_query=step_progress("perform_retrieval", "queries"),
        # With a million distractors the global search takes a while too.
        on_block=step_progress("global_search", "similarities"),
    )
    metrics_path, text = outcome.metrics_path, outcome.text
    # As the file holds them (2 decimals), so a rerun returns the same numbers.
    summary = metrics_summary(outcome.saved)
    publish_summary(
        "perform_retrieval",
        {
            **{
                f"mAP {name} (%)": _percent(value)
                for name, value in sorted(summary["mean_average_precision"].items())
            },
            "geometric verification": config.use_geometric_verification,
            "metrics": f"`{metrics_path}`",
            "computed": "yes" if outcome.computed else "no: metrics.txt was current",
        },
        started=started,
        notes=(
            ["n/a: no query has positives under that protocol"]
            if None in summary["mean_average_precision"].values()
            else ()
        ),
        table=_protocol_rows(summary),
        more=f"`{metrics_path}`:\n\n```\n{text}```",
    )
    return {
        "metrics_path": metrics_path,
        "use_geometric_verification": config.use_geometric_verification,
        **summary,
        "timings": outcome.timings,
    }


@flow(name="perform_retrieval")
def perform_retrieval(train: TrainConfig, check: PerformRetrievalConfig, dataset_dir: str) -> dict:
    """The DELG instructions' evaluation on the downloaded GLDv2 test split and index.

    Exports the model (local_and_global; Cached when check_model made it),
    writes the test queries' ground truth, extracts queries and index, and performs
    retrieval. A DELF model has no global descriptor to rank by: it is skipped.

    Args:
        train: The training run's flags (logdir and model flags).
        check: Geometric verification, the extraction config and the output names.
        dataset_dir: The download's output (test and index splits, their CSVs).

    Returns:
        `skipped` (why) for a DELF model; else ground_truth, export_path,
        config_path, features, extracted and skipped (each {query, index}; a Cached
        extraction gives its first run's counts) and perform_retrieval's result
        (metrics_path, mAP per protocol, ...).

    Raises:
        ValueError: Some images failed to extract (named), or a bad dataset.
    """
    logger = get_run_logger()
    if not train.delg_global_features:
        reason = "a DELF model has no global descriptor to rank by: train with delg_global_features"
        logger.info("perform_retrieval skipped: %s", reason)
        return {"skipped": reason}
    output_dir = model_output_dir(train, check.output_dir)
    export_path = storage.join(output_dir, EXPORT_NAME.format(kind=LOCAL_AND_GLOBAL))
    export_task(export_config(LOCAL_AND_GLOBAL, train, export_path))
    truth = make_revisited_ground_truth_task(
        dataset_dir, storage.join(output_dir, check.ground_truth_name)
    )
    features_dir = storage.join(output_dir, check.features_dir)
    config_path = storage.join(output_dir, DELG_CONFIG_NAME)
    extracted = {}
    for image_set, split in ((QUERY, layout.TEST), (INDEX, layout.INDEX)):
        # The queries are few; the index (761k images on GLDv2) may go to a Beam job.
        on_beam = image_set == INDEX and check.index_runner is not None
        extracted[image_set] = extract_dataset_task(
            image_set,
            export_path,
            truth["path"],
            storage.join(dataset_dir, split),
            storage.join(features_dir, image_set),
            check.extraction,
            config_path,
            runner=check.index_runner if on_beam else None,
            pipeline_options=list(check.index_pipeline_options) if on_beam else None,
        )
    failed = [name for result in extracted.values() for name, _ in result["failed"]]
    if failed:
        raise ValueError(
            f"cannot perform retrieval: {len(failed)} images failed to extract "
            f"(e.g. {failed[0]}); see the extract artifacts, fix them and rerun"
        )
    retrieval = perform_retrieval_task(
        RetrievalConfig(
            dataset_file_path=truth["path"],
            query_features_dir=extracted["query"]["output_dir"],
            index_features_dir=extracted["index"]["output_dir"],
            use_geometric_verification=check.use_geometric_verification,
            output_dir=storage.join(output_dir, check.results_dir),
            search_memory_bytes=check.search_memory_bytes,
        )
    )
    for name, value in sorted(retrieval["mean_average_precision"].items()):
        logger.info("%s: mAP %s", name, _percent(value))
    return {
        "ground_truth": truth["path"],
        "export_path": export_path,
        "config_path": config_path,
        "features": {k: result["output_dir"] for k, result in extracted.items()},
        "extracted": {k: result["extracted"] for k, result in extracted.items()},
        "skipped": {k: result["skipped"] for k, result in extracted.items()},
        **retrieval,
    }
