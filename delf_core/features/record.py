"""Which model and config made each feature file of a folder, recorded in its manifest.

extract_images skips an image whose files exist, whoever made them, so files of an
older model, config, image or crop are found from this record and replaced.
`delf extract_features` and the flows' extract tasks both go through
`extract_recorded`, so a run by hand resumes and redoes stale files as the flow does.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING

from google.protobuf import text_format

from delf_core import manifests, storage
from delf_core.features.extract_job import MANIFEST_NAME, existing_outputs, plan_extraction
from delf_core.features.record_store import LEGACY_KEY, RecordStore

if TYPE_CHECKING:
    from delf_core.features.config import DelfConfig
    from delf_core.features.extract import ExtractReport, ImageItem
    from delf_core.features.extractor import Extractor


def features_source(model: dict, config: DelfConfig, delg_form: bool) -> str:
    """sha256 of what a feature file depends on besides its image: model and config.

    Args:
        model: What the export's files say of its model (`export.current.export_files`).
        config: The DelfConfig the files are extracted with.
        delg_form: `.delg_local`/`.delg_global` files rather than `.delf`.

    Returns:
        The hex digest; it changes with the export's manifest, its weights and the config.
    """
    return manifests.fingerprint(
        {**model, "config": text_format.MessageToString(config), "delg_form": delg_form}
    )


def read_record(output_dir: str) -> dict:
    """The folder's manifest, or {} when it has none (or it is unreadable)."""
    manifest = manifests.read_json(storage.join(output_dir, MANIFEST_NAME))
    return manifest if isinstance(manifest, dict) else {}


def record_store(output_dir: str) -> RecordStore:
    """The folder's per-image records (see delf_core.features.record_store)."""
    return RecordStore(output_dir, MANIFEST_NAME)


def _current_names(items: list[ImageItem], output_dir: str, source: str) -> set[str]:
    """Names of the items whose record says `source` made their files (and of their crop).

    Reads the records a shard at a time, so memory holds one shard, not 761k records.
    """
    wanted = {item.name: record_entry(item, source) for item in items}
    current: set[str] = set()
    for records in record_store(output_dir).shards(wanted):
        current.update(name for name, entry in records.items() if wanted.get(name) == entry)
    return current


def record_entry(item: ImageItem, source: str) -> dict:
    """What the folder's manifest records of the image behind an item's files."""
    entry = {"path": item.path, "source": source}
    if item.bbox is not None:  # a query's crop changes its features as the model does
        entry["bbox"] = [float(v) for v in item.bbox]
    return entry


def feature_files(item: ImageItem, output_dir: str, delg_form: bool, config: DelfConfig) -> list:
    """The paths of the feature files `item` gets in `output_dir`."""
    from delf_core.features.extract import output_paths

    return [path for _, path in output_paths(item, output_dir, delg_form, config)]


def features_stand(
    items: list[ImageItem], output_dir: str, config: DelfConfig, delg_form: bool, source: str
) -> bool:
    """Every item's feature files are in `output_dir`, recorded as made from `source`."""
    current = _current_names(items, output_dir, source)
    if any(item.name not in current for item in items):
        return False
    # One listing of the folder, not a probe per file: an index has 761k images.
    return not plan_extraction(items, output_dir, delg_form, config).todo


def remove_stale(
    items: list[ImageItem], output_dir: str, config: DelfConfig, delg_form: bool, source: str
) -> int:
    """Deletes feature files another model, config, image or crop made; returns how many.

    Files with no record (made before records were kept) count as stale too.
    """
    current = _current_names(items, output_dir, source)
    # One listing of the folder, not an existence probe per file (1.5M on an index).
    existing = existing_outputs(output_dir)
    prefix = storage.join(output_dir, "")
    removed = 0
    for item in items:
        if item.name in current:
            continue
        for url in feature_files(item, output_dir, delg_form, config):
            if url[len(prefix) :] in existing:
                fs, path = storage.resolve(url)
                fs.rm(path)
                removed += 1
    return removed


def record_features(
    items: list[ImageItem], output_dir: str, source: str, failed: set[str], rewritten: bool
) -> None:
    """Records which source made each item's files, then rewrites the folder's manifest.

    Args:
        items: The images extracted (or found done) into `output_dir`.
        output_dir: The features folder.
        source: `features_source` of the model and config.
        failed: Names of the items that failed: their record is dropped.
        rewritten: Files were written or removed: the manifest's `generation` changes,
            so steps that read the folder (perform_retrieval) run again even when the
            new files equal the old ones, which cannot be known without reading them.
    """
    changes = {
        item.name: None if item.name in failed else record_entry(item, source) for item in items
    }
    record_store(output_dir).update(changes)
    # Other fields (the job's counts and config) are kept; the records are in their shards
    # (an older manifest's "images" moved there).
    manifest = {"step": "extract_features", **read_record(output_dir)}
    manifest.pop(LEGACY_KEY, None)
    if rewritten or failed or "generation" not in manifest:
        manifest["generation"] = uuid.uuid4().hex
    manifests.write_json(storage.join(output_dir, MANIFEST_NAME), manifest)


def features_fingerprint(output_dir: str) -> str:
    """sha256 of the folder's records and its manifest's generation: changes when files do.

    Reads the records' index and the manifest, not the records. A folder without a
    manifest (features made elsewhere) always gives the same fingerprint: its files
    are trusted as they are.
    """
    manifest = read_record(output_dir)
    return manifests.fingerprint(
        {"records": record_store(output_dir).digest(), "generation": manifest.get("generation")}
    )


def extract_recorded(
    extractor: Extractor,
    items: list[ImageItem],
    output_dir: str,
    delg_form: bool,
    source: str,
    on_progress: Callable[[ExtractReport, int], None] | None = None,
) -> tuple[ExtractReport, int]:
    """Removes stale files, extracts what is missing, and records what made each file.

    Args:
        extractor: Built from the config the files are extracted with.
        items: The images.
        output_dir: The features folder.
        delg_form: `.delg_local`/`.delg_global` files rather than `.delf`.
        source: `features_source` of the model and config.
        on_progress: See `extract_images`.

    Returns:
        The extraction's report, and how many stale files were removed first.
    """
    from delf_core.features.extract import extract_images

    replaced = remove_stale(items, output_dir, extractor.config, delg_form, source)
    report = extract_images(
        extractor, items, output_dir, delg_form=delg_form, on_progress=on_progress
    )
    failed = {name for name, _ in report.failed}
    record_features(items, output_dir, source, failed, bool(report.extracted or replaced))
    return report, replaced
