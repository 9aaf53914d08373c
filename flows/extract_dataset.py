"""extract_features in the DELG form as Prefect tasks: a Revisited dataset's queries and index."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from google.protobuf import text_format
from prefect import task
from prefect.artifacts import create_markdown_artifact

from delf_core import storage
from delf_core.export.config import LOCAL_AND_GLOBAL
from delf_core.features import DelfConfig, write_delf_config
from delf_core.features.extract import ImageItem, extract_images, items_from_dataset
from delf_core.features.extractor import Extractor
from flows.caching import OutputsStandCache
from flows.extract_features import (
    SEED_GLOBAL_SCALES_IND,
    SEED_MAX_FEATURE_NUM,
    counts_markdown,
    export_manifest,
    extraction_progress,
    features_fingerprint,
    features_source,
    features_stand,
    publish_extract_summary,
    record_features,
    remove_stale,
    seed_delf_config,
    sha256_file,
)
from flows.retries import transient_io_error

# The DELG configs (REFERENCE §6.1): 7 scales as float32 prints them, the global
# descriptor from 0.7071, 1.0 and 1.4142, images at most 1024 px.
DELG_IMAGE_SCALES = (0.25, 0.35355338, 0.5, 0.70710677, 1.0, 1.4142135, 2.0)
DELG_MAX_IMAGE_SIZE = 1024
# delg_gld_config's threshold, for a fully trained R50-DELG. A model of a few steps
# has attention near softplus(0) = 0.69 and needs about 0.5.
DELG_SCORE_THRESHOLD = 175.0
DELG_CONFIG_NAME = "delg_config.pbtxt"
QUERY, INDEX = "query", "index"


@dataclasses.dataclass(frozen=True)
class DelgExtraction:
    """The DelfConfig fields the DELG instructions' configs set, with their values.

    Attributes:
        image_scales: The image pyramid.
        global_scales_ind: Which scales the global descriptor pools.
        score_threshold: Attention score a local feature needs.
        max_feature_num: Local features kept per image.
        max_image_size: Larger images are shrunk to this size first; -1 for none.
    """

    image_scales: tuple[float, ...] = DELG_IMAGE_SCALES
    global_scales_ind: tuple[int, ...] = SEED_GLOBAL_SCALES_IND
    score_threshold: float = DELG_SCORE_THRESHOLD
    max_feature_num: int = SEED_MAX_FEATURE_NUM
    max_image_size: int = DELG_MAX_IMAGE_SIZE


def delg_config(model_path: str, extraction: DelgExtraction) -> DelfConfig:
    """The DELG instructions' config (no PCA, local and global) for a TF2 export.

    Raises:
        ValueError: The export's manifest names another kind than local_and_global.
    """
    kind = (export_manifest(model_path) or {}).get("params", {}).get("kind")
    # An export without a manifest (made elsewhere) is left to the extractor to judge.
    if kind not in (None, LOCAL_AND_GLOBAL):
        raise ValueError(
            f"{model_path} is a {kind} export: retrieval needs local and global "
            "features, from a local_and_global export"
        )
    config = seed_delf_config(model_path, True, extraction.score_threshold)
    del config.image_scales[:]
    config.image_scales.extend(extraction.image_scales)
    del config.delf_global_config.image_scales_ind[:]
    config.delf_global_config.image_scales_ind.extend(extraction.global_scales_ind)
    config.delf_local_config.max_feature_num = extraction.max_feature_num
    config.max_image_size = extraction.max_image_size
    return config


def _config_path(inputs: dict[str, Any]) -> str:
    output_dir = inputs["output_dir"].rstrip("/")
    parent = output_dir.rsplit("/", 1)[0] if "/" in output_dir else "."
    return inputs.get("config_path") or storage.join(parent, DELG_CONFIG_NAME)


def _plan(image_set: str, inputs: dict[str, Any]) -> tuple[DelfConfig, list[ImageItem], str]:
    """The config, the dataset's images of `image_set` and the features' source."""
    config = delg_config(inputs["export_path"], inputs.get("extraction") or DelgExtraction())
    items = items_from_dataset(inputs["dataset_file_path"], inputs["images_dir"], image_set)
    return config, items, features_source(inputs["export_path"], config, delg_form=True)


def _policy(image_set: str) -> OutputsStandCache:
    """Keyed on model, config and ground truth; stands while every feature file does."""

    def identity(inputs: dict[str, Any]) -> str:
        config, _, source = _plan(image_set, inputs)
        return json.dumps(
            {
                "source": source,
                # The image lists and the query boxes come from the ground truth.
                "ground_truth": sha256_file(inputs["dataset_file_path"]),
                "images_dir": inputs["images_dir"],
                "image_set": image_set,
                "output_dir": inputs["output_dir"],
                "config_path": _config_path(inputs),
            },
            sort_keys=True,
        )

    def outputs_stand(inputs: dict[str, Any]) -> bool:
        config, items, source = _plan(image_set, inputs)
        fs, path = storage.resolve(_config_path(inputs))
        try:
            with fs.open(path, "rb") as handle:
                written = handle.read().decode()
        except FileNotFoundError:
            return False
        return written == text_format.MessageToString(config) and features_stand(
            items, inputs["output_dir"], config, True, source
        )

    return OutputsStandCache(
        identity=identity, outputs_stand=outputs_stand, prefix=f"extract_{image_set}"
    )


def _extract(image_set: str, inputs: dict[str, Any]) -> dict:
    """The body of both tasks: config file, stale files out, extraction, record."""
    started = time.monotonic()
    config, items, source = _plan(image_set, inputs)
    output_dir, config_path = inputs["output_dir"], _config_path(inputs)
    write_delf_config(config, config_path)
    replaced = remove_stale(items, output_dir, config, True, source)
    name = "queries" if image_set == QUERY else "index"
    report = extract_images(
        Extractor(config),
        items,
        output_dir,
        delg_form=True,
        on_progress=extraction_progress(len(items), key=f"delf-extract-{name}-progress"),
    )
    failed = {failure for failure, _ in report.failed}
    record_features(items, output_dir, source, failed, bool(report.extracted or replaced))
    create_markdown_artifact(
        counts_markdown(report, replaced, output_dir, config_path),
        key=f"delf-extract-{name}",
        description=f"extract_{name}: {image_set} images of {inputs['dataset_file_path']}",
    )
    publish_extract_summary(f"extract_{name}", report, replaced, output_dir, config_path, started)
    return {
        "image_set": image_set,
        "config_path": config_path,
        "output_dir": output_dir,
        "extracted": report.extracted,
        "skipped": report.skipped,
        "failed": report.failed,
        "fingerprint": features_fingerprint(output_dir),
    }


# Images already extracted are skipped on a retry, so retrying costs little.
_RETRIES = dict(retries=2, retry_delay_seconds=[10, 60], retry_condition_fn=transient_io_error)


@task(
    name="extract_queries",
    task_run_name="extract_queries",
    cache_policy=_policy(QUERY),
    **_RETRIES,
)
def extract_queries_task(
    export_path: str,
    dataset_file_path: str,
    images_dir: str,
    output_dir: str,
    extraction: DelgExtraction | None = None,
    config_path: str | None = None,
) -> dict:
    """`delf extract_features --image_set query`: each query cropped to its box.

    Args:
        export_path: A local_and_global export.
        dataset_file_path: Revisited ground truth (`gnd_*.pkl` or `.mat`).
        images_dir: Holds `<query name>.jpg`.
        output_dir: `<name>.delg_local` and `<name>.delg_global` go here.
        extraction: The config's scales and thresholds; None for the DELG configs'.
        config_path: Where the DelfConfig is written; None for
            `<output_dir>/../delg_config.pbtxt`.

    Returns:
        image_set, config_path, output_dir, the counts, the failures as
        (name, reason), and the folder's fingerprint (changes when its files do).
    """
    return _extract(QUERY, dict(locals()))


@task(
    name="extract_index",
    task_run_name="extract_index",
    cache_policy=_policy(INDEX),
    **_RETRIES,
)
def extract_index_task(
    export_path: str,
    dataset_file_path: str,
    images_dir: str,
    output_dir: str,
    extraction: DelgExtraction | None = None,
    config_path: str | None = None,
) -> dict:
    """`delf extract_features --image_set index`: the whole index images.

    Args and Returns as `extract_queries_task`, for the index images.
    """
    return _extract(INDEX, dict(locals()))
