"""The output folder: made consistent before a build, and a stopped build's reason kept in it."""

from __future__ import annotations

import re
from collections.abc import Iterable

from delf_core import records, storage
from delf_core.build_image_dataset.plan import WORK_FOLDER_NAME
from delf_core.build_image_dataset.report import MANIFEST_NAME, RELABELING_NAME, REPORT_NAME

_SHARD = re.compile(
    rf"(?:{records.TRAIN_PREFIX}|{records.VALIDATION_PREFIX}|{records.TEST_PREFIX})"
    r"-\d{5}-of-\d{5}"
)
# `.<name>.<8 hex>.tmp`: what write_shard and storage.atomic_open leave when killed.
_TEMPORARY = re.compile(r"\.(.+)\.[0-9a-f]{8}\.tmp")
_OUTPUTS = (MANIFEST_NAME, REPORT_NAME, RELABELING_NAME)
STOPS_FOLDER = "stops"


def prepare_output(output_directory: str, shard_names: Iterable[str]) -> list[str]:
    """Readies the output folder for a new build; returns the names it removed.

    In this order, so that no state of a killed build passes for a finished one:
    1. the manifest, synced away before anything else changes: until the new one is
       written, no reader or rerun takes the folder for a finished build;
    2. the report and relabeling.csv, which describe the old build;
    3. shards this build does not write (another --num_shards, a split no longer
       built), so that `train*` matches this build's shards only;
    4. temporary files and work folders of killed runs.

    Only names this step writes are touched, so a shared folder keeps everything else.
    """
    fs, root = storage.resolve(output_directory)
    fs.makedirs(root, exist_ok=True)
    removed = []
    manifest = storage.join(root, MANIFEST_NAME)
    if fs.exists(manifest):
        fs.rm(manifest)
        _sync(fs, root)
        removed.append(MANIFEST_NAME)
    keep = set(shard_names)
    try:
        listed = fs.ls(root, detail=False)
    except FileNotFoundError:  # an object store has no empty folders
        listed = []
    for path in sorted(listed):
        name = path.rstrip("/").rsplit("/", 1)[-1]
        temporary = _TEMPORARY.fullmatch(name)
        if (
            name in (REPORT_NAME, RELABELING_NAME)
            or (_SHARD.fullmatch(name) and name not in keep)
            or (temporary and (temporary[1] in _OUTPUTS or _SHARD.fullmatch(temporary[1])))
        ):
            fs.rm(path)
            removed.append(name)
    work = storage.join(root, WORK_FOLDER_NAME)
    if fs.exists(work):
        fs.rm(work, recursive=True)
        removed.append(WORK_FOLDER_NAME)
    _sync(fs, root)
    return removed


def record_stop(work_folder: str, shard_name: str, message: str) -> None:
    """Keeps why the writing of `shard_name` stopped (a --strict problem) for the launcher."""
    fs, folder = storage.resolve(storage.join(work_folder, STOPS_FOLDER))
    storage.write_bytes(fs, storage.join(folder, f"{shard_name}.txt"), message.encode())


def first_stop(work_folder: str) -> str | None:
    """The reason recorded by the first shard (in name order) that stopped, if any."""
    fs, folder = storage.resolve(storage.join(work_folder, STOPS_FOLDER))
    fs.invalidate_cache(folder)  # object stores cache listings; other workers write here
    try:
        listed = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return None
    # Hidden names are records still being written.
    names = sorted(p for p in listed if not p.rsplit("/", 1)[-1].startswith("."))
    return fs.cat_file(names[0]).decode() if names else None


def _sync(fs, root: str) -> None:
    if storage.is_local(fs):
        storage.fsync_dir(root)
