"""The `extract_features` step as a Prefect task: the seed's DelfConfig, cached on model, images."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from prefect import task

from delf_core import storage
from delf_core.export.config import GLOBAL, LOCAL_AND_GLOBAL
from delf_core.export.current import export_files, exported_kind
from delf_core.features import DelfConfig, write_delf_config
from delf_core.features.extract import ExtractReport, ImageItem
from delf_core.features.presets import seed_delf_config
from delf_core.features.record import (
    extract_recorded,
    feature_files,
    features_source,
    features_stand,
)
from flows.caching import OutputsStandCache
from flows.evaluation_configs import CONFIG_NAME, SEED_SCORE_THRESHOLD
from flows.progress import RunProgress
from flows.run_summary import COUNTED
from flows.summary import capped, publish_summary


def _config_of(inputs: dict[str, Any]) -> DelfConfig:
    kind = exported_kind(inputs["export_path"])
    if kind == GLOBAL:
        raise ValueError(
            f"{inputs['export_path']} is a global-only export: extract_features needs "
            "local features, from a local or local_and_global export"
        )
    return seed_delf_config(
        inputs["export_path"], kind == LOCAL_AND_GLOBAL, inputs["score_threshold"]
    )


def _items(images: list[str]) -> list[ImageItem]:
    # Named after the file stem, as the list form of the original names its outputs.
    items = [ImageItem(os.path.splitext(os.path.basename(p))[0], p) for p in images]
    names = [item.name for item in items]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise ValueError(f"two images are named {duplicate!r}: their feature files would clash")
    return items


def _config_path(inputs: dict[str, Any]) -> str:
    output_dir = inputs["output_dir"].rstrip("/")
    parent = output_dir.rsplit("/", 1)[0] if "/" in output_dir else "."
    return inputs.get("config_path") or storage.join(parent, CONFIG_NAME)


def _source(inputs: dict[str, Any]) -> str:
    return features_source(
        export_files(inputs["export_path"]), _config_of(inputs), inputs.get("delg_form", False)
    )


def _extract_identity(inputs: dict[str, Any]) -> str:
    return json.dumps(
        {
            "source": _source(inputs),
            "images": list(inputs["images"]),
            "output_dir": inputs["output_dir"],
            "config_path": _config_path(inputs),
        },
        sort_keys=True,
    )


def _extract_stands(inputs: dict[str, Any]) -> bool:
    """The config file and every image's feature files are there, made by this source."""
    delg_form = inputs.get("delg_form", False)
    return storage.exists(_config_path(inputs)) and features_stand(
        _items(inputs["images"]),
        inputs["output_dir"],
        _config_of(inputs),
        delg_form,
        _source(inputs),
    )


def extraction_progress(total: int, step: str = "extract_features"):
    """An `on_progress` for extraction: the step's progress artifact, images done of `total`.

    The first image (model loading, graph tracing) is left out of the rate.
    """
    progress = RunProgress(step, total, "images")
    progress.finish()

    def update(report: ExtractReport, total: int) -> None:
        progress.update(report.total)

    return update


def publish_extract_summary(
    step: str,
    report: ExtractReport,
    replaced: int,
    output_dir: str,
    config_path: str,
    started: float,
) -> None:
    """The `gldv2-<step>` artifact: counts, rate, folders, the failed images."""
    seconds = time.monotonic() - started
    publish_summary(
        step,
        {
            "images extracted": report.extracted,
            "already there": report.skipped,
            "failed (unreadable or unfit)": len(report.failed),
            "stale files replaced": replaced,
            "images/s": f"{report.extracted / seconds:.2f}" if report.extracted else "n/a",
            "output folder": f"`{output_dir}`",
            "config": f"`{config_path}`",
        },
        started=started,
        notes=capped(
            (f"failed: `{name}`: {reason}" for name, reason in report.failed), len(report.failed)
        ),
    )


@task(
    name="extract_features",
    tags=["extract_features", "gpu"],
    **COUNTED,
    task_run_name="extract_features",
    cache_policy=OutputsStandCache(
        identity=_extract_identity, outputs_stand=_extract_stands, prefix="extract_features"
    ),
)
def extract_features_task(
    export_path: str,
    images: list[str],
    output_dir: str,
    score_threshold: float = SEED_SCORE_THRESHOLD,
    config_path: str | None = None,
    delg_form: bool = False,
) -> dict:
    """Writes the seed's DelfConfig for `export_path` and extracts `images`.

    Args:
        export_path: A local or local_and_global export (its manifest tells which).
        images: Image paths; `<output_dir>/<file stem>.delf` is written for each.
        output_dir: Where the feature files go.
        score_threshold: The config's local `score_threshold`.
        config_path: Where the config goes; `<output_dir>/../delf_config_example.pbtxt`
            when None.
        delg_form: `.delg_local`/`.delg_global` files instead of `.delf`.

    Returns:
        config_path, output_dir, the counts, the failures as (name, reason) and the
        feature files of each image.
    """
    # The cache policy's helpers take the inputs by name; the body reuses them.
    inputs = dict(locals())
    started = time.monotonic()
    config, source, items = _config_of(inputs), _source(inputs), _items(images)
    config_path = _config_path(inputs)
    write_delf_config(config, config_path)
    from delf_core.features.extractor import Extractor  # TensorFlow: only to extract

    report, replaced = extract_recorded(
        Extractor(config),
        items,
        output_dir,
        delg_form,
        source,
        on_progress=extraction_progress(len(items)),
    )
    publish_extract_summary("extract_features", report, replaced, output_dir, config_path, started)
    return {
        "config_path": config_path,
        "output_dir": output_dir,
        "extracted": report.extracted,
        "skipped": report.skipped,
        "failed": report.failed,
        "features": {
            item.name: feature_files(item, output_dir, delg_form, config) for item in items
        },
    }
