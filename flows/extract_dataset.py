"""extract_features in the DELG form as Prefect tasks: a Revisited dataset's queries and index."""

from __future__ import annotations

import json
import time
from typing import Any

from google.protobuf import text_format
from prefect import task

from beam_jobs.options import check_runner
from delf_core import manifests, storage
from delf_core.export.config import LOCAL_AND_GLOBAL
from delf_core.export.current import export_files, exported_kind
from delf_core.features import DelfConfig, write_delf_config
from delf_core.features.extract import ImageItem, items_from_dataset
from delf_core.features.extract_job import ExtractJobConfig
from delf_core.features.presets import DELG_PRESET, load_preset
from delf_core.features.record import (
    extract_recorded,
    features_fingerprint,
    features_source,
    features_stand,
)
from flows.caching import OutputsStandCache
from flows.evaluation_configs import DELG_CONFIG_NAME, INDEX, QUERY, DelgExtraction
from flows.extract_features import (
    extraction_progress,
    publish_extract_summary,
)
from flows.extract_on_beam import extract_dataset_with_beam
from flows.retries import TRANSIENT_IO_RETRIES
from flows.run_summary import COUNTED


def delg_config(model_path: str, extraction: DelgExtraction) -> DelfConfig:
    """The DELG instructions' config (no PCA, local and global) for a TF2 export.

    Raises:
        ValueError: The export's manifest names another kind than local_and_global.
    """
    kind = exported_kind(model_path)
    # An export without a manifest (made elsewhere) is left to the extractor to judge.
    if kind not in (None, LOCAL_AND_GLOBAL):
        raise ValueError(
            f"{model_path} is a {kind} export: retrieval needs local and global "
            "features, from a local_and_global export"
        )
    config = load_preset(DELG_PRESET, model_path, extraction.score_threshold)
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
    return (
        config,
        items,
        features_source(export_files(inputs["export_path"]), config, delg_form=True),
    )


def _identity(inputs: dict[str, Any]) -> str:
    """Keyed on model, config and ground truth."""
    _, _, source = _plan(inputs["image_set"], inputs)
    return json.dumps(
        {
            "source": source,
            # The image lists and the query boxes come from the ground truth.
            "ground_truth": manifests.sha256_file(inputs["dataset_file_path"]),
            "images_dir": inputs["images_dir"],
            "image_set": inputs["image_set"],
            "output_dir": inputs["output_dir"],
            "config_path": _config_path(inputs),
        },
        sort_keys=True,
    )


def _outputs_stand(inputs: dict[str, Any]) -> bool:
    """The config file and every feature file stand, made by this model and config."""
    config, items, source = _plan(inputs["image_set"], inputs)
    written = manifests.read_text(_config_path(inputs))
    return written == text_format.MessageToString(config) and features_stand(
        items, inputs["output_dir"], config, True, source
    )


def _extract(image_set: str, inputs: dict[str, Any]) -> dict:
    """The task's body: config file, stale files out, extraction, record."""
    started = time.monotonic()
    config, items, source = _plan(image_set, inputs)
    output_dir, config_path = inputs["output_dir"], _config_path(inputs)
    write_delf_config(config, config_path)
    name = "queries" if image_set == QUERY else "index"
    if inputs.get("runner"):
        job = ExtractJobConfig(
            delg_form=True,
            config_path=config_path,
            output_dir=output_dir,
            dataset_file_path=inputs["dataset_file_path"],
            images_dir=inputs["images_dir"],
            image_set=image_set,
        )
        report, replaced = extract_dataset_with_beam(
            config, items, job, source, inputs["runner"], inputs.get("pipeline_options") or []
        )
    else:
        from delf_core.features.extractor import Extractor  # TensorFlow: only to extract

        report, replaced = extract_recorded(
            Extractor(config),
            items,
            output_dir,
            True,
            source,
            on_progress=extraction_progress(len(items), f"extract_{name}"),
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


@task(
    name="extract_features",
    tags=["extract_features", "gpu"],
    **COUNTED,
    task_run_name="extract_features-{image_set}",
    cache_policy=OutputsStandCache(
        identity=_identity, outputs_stand=_outputs_stand, prefix="extract_features"
    ),
    **TRANSIENT_IO_RETRIES,
)
def extract_dataset_task(
    image_set: str,
    export_path: str,
    dataset_file_path: str,
    images_dir: str,
    output_dir: str,
    extraction: DelgExtraction | None = None,
    config_path: str | None = None,
    runner: str | None = None,
    pipeline_options: list[str] | None = None,
) -> dict:
    """`delf extract_features --image_set <query|index>` of a Revisited dataset's images.

    Args:
        image_set: "query" (each cropped to its box) or "index" (whole images).
        export_path: A local_and_global export.
        dataset_file_path: Revisited ground truth (`gnd_*.pkl` or `.mat`).
        images_dir: Holds `<name>.jpg`.
        output_dir: `<name>.delg_local` and `<name>.delg_global` go here.
        extraction: The config's scales and thresholds; None for the DELG configs'.
        config_path: Where the DelfConfig is written; None for
            `<output_dir>/../delg_config.pbtxt`.
        runner: None extracts in this process; a Beam runner (FnApiRunner,
            DaskRunner, DataflowRunner) hands the images to the extract_features Beam
            job. The files are the same, so either skips what the other made.
        pipeline_options: The Beam job's other flags (`--dask_client_address=...`,
            `--project=...`).

    Returns:
        image_set, config_path, output_dir, the counts, the failures as
        (name, reason), and the folder's fingerprint (changes when its files do).
    """
    if image_set not in (QUERY, INDEX):
        raise ValueError(f"image_set {image_set!r}: use {QUERY} or {INDEX}")
    if runner is not None:
        runner = check_runner(runner)
    return _extract(image_set, dict(locals()))
