"""Whether an export folder holds a current export of its checkpoint, and exporting if not.

`delf export_*` and the flow's export task both go through `export_if_stale`: an export
of the same checkpoint content and parameters is kept, and says so.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath

from delf_core import manifests, storage
from delf_core.export.checkpoint_path import resolve_checkpoint
from delf_core.export.config import MANIFEST_NAME, ExportConfig
from delf_core.training.run_record import read_run

# Written beside export_manifest.json, last: which checkpoint content the export holds.
# The export's manifest names the checkpoint path only, and a retrained model writes
# the same path.
FINGERPRINT_NAME = "checkpoint_fingerprint.json"


@dataclasses.dataclass(frozen=True)
class ExportOutcome:
    """What `export_if_stale` did.

    Attributes:
        exported: A new export was written; False when the folder's was current.
        fingerprint: `checkpoint_fingerprint` of the checkpoint exported.
        replaced: Where a stale export was moved, if one was.
    """

    exported: bool
    fingerprint: str
    replaced: str | None = None


def checkpoint_fingerprint(ckpt_path: str) -> str:
    """sha256 of the checkpoint's `.index` and its training run, or "missing".

    The index lists every tensor with the CRC32C of its bytes, so it changes whenever
    a weight does, and it is small (tens of kB) where the weights take up to a GB.
    """
    try:
        fs, path = storage.resolve(resolve_checkpoint(ckpt_path) + ".index")
        with fs.open(path, "rb") as handle:
            digest = hashlib.sha256(handle.read())
    except FileNotFoundError:
        return "missing"
    # The training run's token too: a model trained again is exported again, even
    # when its weights come out the same.
    run = read_run(posixpath.dirname(ckpt_path.rstrip("/")))
    if run is not None:
        digest.update(json.dumps(run, sort_keys=True).encode())
    return digest.hexdigest()


def exported_kind(export_path: str) -> str | None:
    """The kind (local, global, local_and_global) its manifest gives an export, or None."""
    manifest = manifests.read_json(storage.join(export_path, MANIFEST_NAME))
    if not isinstance(manifest, dict):
        return None
    return (manifest.get("params") or {}).get("kind")


def _params(config: ExportConfig) -> dict:
    # As export_manifest.json stores them: JSON turns the scales tuple into a list.
    return json.loads(json.dumps(dataclasses.asdict(config)))


def export_identity(config: ExportConfig) -> str:
    """What an export of `config` is: its parameters and its checkpoint's content."""
    return json.dumps(
        {"params": _params(config), "checkpoint": checkpoint_fingerprint(config.ckpt_path)},
        sort_keys=True,
    )


def export_is_current(config: ExportConfig, fingerprint: str | None = None) -> bool:
    """The export folder is finished, of these params, from this very checkpoint.

    Args:
        config: The export.
        fingerprint: `checkpoint_fingerprint(config.ckpt_path)`, when already known.
    """
    if fingerprint is None:
        fingerprint = checkpoint_fingerprint(config.ckpt_path)
    manifest = manifests.read_json(storage.join(config.export_path, MANIFEST_NAME))
    recorded = manifests.read_json(storage.join(config.export_path, FINGERPRINT_NAME))
    return (
        isinstance(manifest, dict)
        and manifest.get("params") == _params(config)
        and isinstance(recorded, dict)
        and recorded.get("sha256_index") == fingerprint
    )


def export_if_stale(config: ExportConfig, replace_stale: bool = False) -> ExportOutcome:
    """Exports `config` unless its folder holds a current export; fingerprint file last.

    Args:
        config: The export.
        replace_stale: Move a folder that holds anything else to `<export_path>.previous`
            (the flow: its checkpoint was overwritten by the new training run, so the
            stale export could not be made again). False (`delf export_*` by hand)
            keeps the original's refusal: such a folder raises ExportExistsError, as
            a person may have put it there.

    Returns:
        What was done.

    Raises:
        ExportExistsError: The folder holds something else and not `replace_stale`.
        FileNotFoundError, CheckpointMismatchError: See `export_model`.
    """
    resolve_checkpoint(config.ckpt_path)  # a missing checkpoint fails before any move
    fingerprint = checkpoint_fingerprint(config.ckpt_path)
    # Also when the flow lost its record of the task (a new PREFECT_HOME): the export
    # manifest spares the re-export (DESIGN.md rule 5).
    if export_is_current(config, fingerprint):
        return ExportOutcome(exported=False, fingerprint=fingerprint)
    from delf_core.export.export import export_model  # TensorFlow: only to export

    replaced = manifests.set_aside(config.export_path) if replace_stale else None
    export_model(config)
    manifests.write_json(
        storage.join(config.export_path, FINGERPRINT_NAME),
        {"checkpoint": config.ckpt_path, "sha256_index": fingerprint},
    )
    return ExportOutcome(exported=True, fingerprint=fingerprint, replaced=replaced)


def export_files(export_path: str) -> dict:
    """What an export folder's files say of its model: its manifest, the training run
    it holds and its weights (the variables index holds each tensor's CRC32C)."""
    return {
        "export_manifest": manifests.read_json(storage.join(export_path, MANIFEST_NAME)),
        # A model trained again gives new features, even when its weights come out the same.
        "checkpoint": manifests.read_json(storage.join(export_path, FINGERPRINT_NAME)),
        "weights": manifests.sha256_file(storage.join(export_path, "variables/variables.index")),
    }
