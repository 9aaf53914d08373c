"""The `extract_features` step as a Prefect task: the seed's DelfConfig, cached on model, images."""

from __future__ import annotations

import hashlib
import json
import os
import time
import uuid
from typing import Any

from google.protobuf import text_format
from prefect import task
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    update_progress_artifact,
)

from delf_core import storage
from delf_core.export.config import GLOBAL, LOCAL_AND_GLOBAL
from delf_core.export.export import MANIFEST_NAME
from delf_core.features import DelfConfig, write_delf_config
from delf_core.features.extract import ExtractReport, ImageItem, extract_images, output_paths
from delf_core.features.extract_job import plan_extraction
from delf_core.features.extractor import Extractor
from flows.caching import OutputsStandCache
from flows.export import FINGERPRINT_NAME
from flows.summary import capped, publish_summary

# The seed README's test config (REFERENCE §6.1): 7 scales, 1000 features, no PCA.
SEED_IMAGE_SCALES = (0.25, 0.3536, 0.5, 0.7071, 1.0, 1.4142, 2.0)
SEED_MAX_FEATURE_NUM = 1000
SEED_SCORE_THRESHOLD = 100.0
# The DELG configs' global scales: 0.7071, 1.0, 1.4142.
SEED_GLOBAL_SCALES_IND = (3, 4, 5)
CONFIG_NAME = "delf_config_example.pbtxt"
# Which model and config made each feature file of a folder: extract_images skips
# files that exist, so files of an older model must be found and replaced.
FEATURES_MANIFEST_NAME = "extract_features_manifest.json"


def seed_delf_config(
    model_path: str, use_global_features: bool, score_threshold: float = SEED_SCORE_THRESHOLD
) -> DelfConfig:
    """The seed README's delf_config_example.pbtxt for a TF2 export at `model_path`.

    Args:
        model_path: The SavedModel folder.
        use_global_features: For a local_and_global (DELG) export, whose signature also
            takes the global scale indices.
        score_threshold: Attention score a local feature needs; the seed's 100.0 suits
            a fully trained model.

    Returns:
        The config message.
    """
    config = DelfConfig(
        model_path=model_path,
        image_scales=SEED_IMAGE_SCALES,
        is_tf2_exported=True,
        use_local_features=True,
        use_global_features=use_global_features,
    )
    config.delf_local_config.use_pca = False
    config.delf_local_config.max_feature_num = SEED_MAX_FEATURE_NUM
    config.delf_local_config.score_threshold = score_threshold
    if use_global_features:
        config.delf_global_config.use_pca = False
        config.delf_global_config.image_scales_ind.extend(SEED_GLOBAL_SCALES_IND)
    return config


def sha256_file(url: str) -> str | None:
    """sha256 of a file's bytes, or None when there is no such file."""
    fs, path = storage.resolve(url)
    try:
        with fs.open(path, "rb") as handle:
            return hashlib.sha256(handle.read()).hexdigest()
    except FileNotFoundError:
        return None


def export_manifest(export_path: str, name: str = MANIFEST_NAME) -> dict | None:
    """The export's `export_manifest.json` (or other JSON `name`), or None when unreadable."""
    fs, path = storage.resolve(storage.join(export_path, name))
    try:
        return storage.read_json(fs, path)
    except (OSError, ValueError):
        return None


def _config_of(inputs: dict[str, Any]) -> DelfConfig:
    manifest = export_manifest(inputs["export_path"]) or {}
    kind = manifest.get("params", {}).get("kind")
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


def features_source(export_path: str, config: DelfConfig, delg_form: bool) -> str:
    """sha256 of what a feature file depends on besides its image: model and config.

    Args:
        export_path: The SavedModel folder.
        config: The DelfConfig the files are extracted with.
        delg_form: `.delg_local`/`.delg_global` files rather than `.delf`.

    Returns:
        The hex digest; it changes with the export's manifest, its weights and the config.
    """
    return hashlib.sha256(
        json.dumps(
            {
                "export_manifest": export_manifest(export_path),
                # Which training run the export holds: a model trained again gives
                # new features, even when its weights come out the same.
                "checkpoint": export_manifest(export_path, FINGERPRINT_NAME),
                # The export's weights: the index holds each tensor's CRC32C.
                "weights": sha256_file(storage.join(export_path, "variables/variables.index")),
                "config": text_format.MessageToString(config),
                "delg_form": delg_form,
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()


def _source(inputs: dict[str, Any]) -> str:
    return features_source(
        inputs["export_path"], _config_of(inputs), inputs.get("delg_form", False)
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


def _manifest(output_dir: str) -> dict:
    fs, path = storage.resolve(storage.join(output_dir, FEATURES_MANIFEST_NAME))
    try:
        return storage.read_json(fs, path) or {}
    except (OSError, ValueError):
        return {}


def _recorded(output_dir: str) -> dict[str, dict]:
    return _manifest(output_dir).get("images", {})


def record_entry(item: ImageItem, source: str) -> dict:
    """What the folder's manifest records of the image behind an item's files."""
    entry = {"path": item.path, "source": source}
    if item.bbox is not None:  # a query's crop changes its features as the model does
        entry["bbox"] = [float(v) for v in item.bbox]
    return entry


def _outputs(item: ImageItem, output_dir: str, delg_form: bool, config: DelfConfig) -> list[str]:
    return [path for _, path in output_paths(item, output_dir, delg_form, config)]


def features_stand(
    items: list[ImageItem], output_dir: str, config: DelfConfig, delg_form: bool, source: str
) -> bool:
    """Every item's feature files are in `output_dir`, recorded as made from `source`."""
    recorded = _recorded(output_dir)
    if any(recorded.get(item.name) != record_entry(item, source) for item in items):
        return False
    # One listing of the folder, not a probe per file: an index has 761k images.
    return not plan_extraction(items, output_dir, delg_form, config).todo


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


def remove_stale(
    items: list[ImageItem], output_dir: str, config: DelfConfig, delg_form: bool, source: str
) -> int:
    """Deletes feature files another model, config, image or crop made; returns how many.

    extract_images skips an image whose files exist, whoever made them.
    """
    recorded = _recorded(output_dir)
    removed = 0
    for item in items:
        if recorded.get(item.name) == record_entry(item, source):
            continue
        for url in _outputs(item, output_dir, delg_form, config):
            fs, path = storage.resolve(url)
            if fs.exists(path):
                fs.rm(path)
                removed += 1
    return removed


def record_features(
    items: list[ImageItem], output_dir: str, source: str, failed: set[str], rewritten: bool
) -> None:
    """Records which source made each item's files in the folder's manifest.

    Args:
        items: The images extracted (or found done) into `output_dir`.
        output_dir: The features folder.
        source: `features_source` of the model and config.
        failed: Names of the items that failed: their record is dropped.
        rewritten: Files were written or removed: the manifest's `generation` changes,
            so steps that read the folder (perform_retrieval) run again even when the
            new files equal the old ones, which cannot be known without reading them.
    """
    # Other fields (the batch job's counts and config) are kept; only "images" changes.
    manifest = {"step": "extract_features", **_manifest(output_dir)}
    images = manifest.setdefault("images", {})
    for item in items:
        if item.name in failed:
            images.pop(item.name, None)
        else:
            images[item.name] = record_entry(item, source)
    if rewritten or failed or "generation" not in manifest:
        manifest["generation"] = uuid.uuid4().hex
    fs, path = storage.resolve(storage.join(output_dir, FEATURES_MANIFEST_NAME))
    storage.write_json(fs, path, manifest)


def features_fingerprint(output_dir: str) -> str:
    """sha256 of the folder manifest's records and generation: changes when files do.

    A folder without a manifest (features made by `delf extract_features`) always gives
    the same fingerprint: its files are trusted as they are.
    """
    manifest = _manifest(output_dir)
    return hashlib.sha256(
        json.dumps(
            {"images": manifest.get("images", {}), "generation": manifest.get("generation")},
            sort_keys=True,
        ).encode()
    ).hexdigest()


def extraction_progress(total: int, key: str = "delf-extract-progress"):
    """A Prefect progress artifact, updated about every 1% of the images."""
    artifact_id = create_progress_artifact(0.0, key=key, description=f"images of {total} extracted")
    every = max(1, total // 100)

    def update(report: ExtractReport, total: int) -> None:
        if report.total % every == 0 or report.total == total:
            update_progress_artifact(artifact_id, 100.0 * report.total / total)

    return update


def counts_markdown(report: ExtractReport, replaced: int, output_dir: str, config_path: str) -> str:
    """The counts of one extraction, and each failed image with why, as markdown."""
    lines = [
        f"**{report.extracted}** extracted, **{report.skipped}** already there, "
        f"**{len(report.failed)}** failed, of {report.total} images "
        f"({replaced} stale files replaced) into `{output_dir}` with `{config_path}`",
        *(f"- failed: `{name}`: {reason}" for name, reason in report.failed),
    ]
    return "\n\n".join(lines[:1]) + "\n\n" + "\n".join(lines[1:])


def publish_extract_summary(
    step: str,
    report: ExtractReport,
    replaced: int,
    output_dir: str,
    config_path: str,
    started: float,
) -> None:
    """The `gldv2-<step>-summary` artifact: counts, rate, folders, the failed images."""
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
    # Feature files of an older export would be skipped by extract_images.
    replaced = remove_stale(items, output_dir, config, delg_form, source)
    report = extract_images(
        Extractor(config),
        items,
        output_dir,
        delg_form=delg_form,
        on_progress=extraction_progress(len(items)),
    )
    failed = {name for name, _ in report.failed}
    record_features(items, output_dir, source, failed, bool(report.extracted or replaced))
    create_markdown_artifact(
        counts_markdown(report, replaced, output_dir, config_path),
        key="delf-extract-features",
        description="extract_features counts",
    )
    publish_extract_summary("extract_features", report, replaced, output_dir, config_path, started)
    return {
        "config_path": config_path,
        "output_dir": output_dir,
        "extracted": report.extracted,
        "skipped": report.skipped,
        "failed": report.failed,
        "features": {item.name: _outputs(item, output_dir, delg_form, config) for item in items},
    }
