"""The export steps (export_local_model, ...) as one Prefect task, cached on config and weights."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import posixpath
import time
from typing import Any

import tensorflow as tf
from prefect import task
from prefect.artifacts import create_table_artifact
from tensorflow.core.protobuf import saved_model_pb2

from delf_core import storage
from delf_core.export import ExportConfig, export_model
from delf_core.export.config import GLOBAL, LOCAL, LOCAL_AND_GLOBAL
from delf_core.export.export import MANIFEST_NAME
from delf_core.export.restore import resolve_checkpoint
from delf_core.training.config import TrainConfig
from delf_core.training.loop import WEIGHTS_NAME
from flows.caching import OutputsStandCache
from flows.summary import format_bytes, publish_summary, size_on_disk
from flows.train import read_run

# Written by this task beside export_manifest.json: which checkpoint content the export
# holds. The library's manifest names the checkpoint path only, and a retrained model
# writes the same path.
FINGERPRINT_NAME = "checkpoint_fingerprint.json"
# A stale export is kept here (one generation) rather than deleted: the checkpoint it
# came from was overwritten by the new training run, so it could not be made again.
PREVIOUS_SUFFIX = ".previous"


def checkpoint_fingerprint(ckpt_path: str) -> str:
    """sha256 of the checkpoint's `.index` and its training run, or "missing".

    The index lists every tensor with the CRC32C of its bytes, so it changes whenever
    a weight does, and it is small (tens of kB) where the weights take up to a GB.
    """
    try:
        with tf.io.gfile.GFile(resolve_checkpoint(ckpt_path) + ".index", "rb") as handle:
            digest = hashlib.sha256(handle.read())
    except (FileNotFoundError, tf.errors.NotFoundError):
        return "missing"
    # The training run's token too: a model trained again is exported again, even
    # when its weights come out the same.
    run = read_run(posixpath.dirname(ckpt_path.rstrip("/")))
    if run is not None:
        digest.update(json.dumps(run, sort_keys=True).encode())
    return digest.hexdigest()


def export_config(kind: str, train: TrainConfig, export_path: str, **flags) -> ExportConfig:
    """The export of `kind` (original script's defaults) for the model `train` trained.

    The model flags the checkpoint's structure depends on are taken from `train`; the
    global exporter keeps its own block3-strides and autoencoder defaults, as the
    original builds its model without them.
    """
    model_flags: dict[str, Any] = {}
    if kind in (LOCAL, LOCAL_AND_GLOBAL):
        model_flags.update(
            block3_strides=train.block3_strides,
            use_autoencoder=train.use_autoencoder,
            autoencoder_dimensions=train.autoencoder_dimensions,
            local_feature_map_channels=train.local_feature_map_channels,
        )
    if kind in (GLOBAL, LOCAL_AND_GLOBAL):
        model_flags.update(
            delg_global_features=train.delg_global_features,
            delg_gem_power=train.delg_gem_power,
            delg_embedding_layer_dim=train.delg_embedding_layer_dim,
        )
    ckpt_path = storage.join(train.logdir, WEIGHTS_NAME)
    return ExportConfig.for_kind(
        kind, ckpt_path=ckpt_path, export_path=export_path, **{**model_flags, **flags}
    )


def _params(config: ExportConfig) -> dict:
    # As export_manifest.json stores them: JSON turns the scales tuple into a list.
    return json.loads(json.dumps(dataclasses.asdict(config)))


def _export_identity(inputs: dict[str, Any]) -> str:
    config: ExportConfig = inputs["config"]
    return json.dumps(
        {"params": _params(config), "checkpoint": checkpoint_fingerprint(config.ckpt_path)},
        sort_keys=True,
    )


def _read_json(url: str) -> Any | None:
    fs, path = storage.resolve(url)
    try:
        return storage.read_json(fs, path)
    except (OSError, ValueError):  # unreadable or half-written: not a finished export
        return None


def export_is_current(config: ExportConfig, fingerprint: str) -> bool:
    """The export folder is finished, of these params, from this very checkpoint."""
    manifest = _read_json(storage.join(config.export_path, MANIFEST_NAME))
    recorded = _read_json(storage.join(config.export_path, FINGERPRINT_NAME))
    return (
        manifest is not None
        and manifest.get("params") == _params(config)
        and recorded is not None
        and recorded.get("sha256_index") == fingerprint
    )


def _export_stands(inputs: dict[str, Any]) -> bool:
    config: ExportConfig = inputs["config"]
    return export_is_current(config, checkpoint_fingerprint(config.ckpt_path))


def _set_aside(export_path: str) -> str | None:
    """Moves an existing export to `<export_path>.previous`; returns where it went."""
    fs, path = storage.resolve(export_path.rstrip("/"))
    if not fs.exists(path):
        return None
    previous = path + PREVIOUS_SUFFIX
    if fs.exists(previous):
        fs.rm(previous, recursive=True)
    fs.mv(path, previous, recursive=True)
    return storage.url_of(fs, previous)


def signature_summary(export_path: str) -> dict[str, dict[str, str]]:
    """`serving_default`'s inputs and outputs as `dtype[shape]`, read from saved_model.pb.

    Parsing the graph file is instant; loading the SavedModel would restore every weight.
    """
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(storage.join(export_path, "saved_model.pb"), "rb") as handle:
        saved_model.ParseFromString(handle.read())
    signature = saved_model.meta_graphs[0].signature_def["serving_default"]

    def spec(info) -> str:
        dims = ["None" if d.size < 0 else str(d.size) for d in info.tensor_shape.dim]
        return f"{tf.dtypes.as_dtype(info.dtype).name}[{', '.join(dims)}]"

    return {
        "inputs": {name: spec(info) for name, info in sorted(signature.inputs.items())},
        "outputs": {name: spec(info) for name, info in sorted(signature.outputs.items())},
    }


def _worth_retrying(task, task_run, state) -> bool:
    # A missing checkpoint or flags that do not fit it fail the same way every time.
    error = state.result(raise_on_failure=False)
    return not isinstance(error, FileNotFoundError | FileExistsError | ValueError)


@task(
    name="export",
    task_run_name="export-{config.kind}",
    cache_policy=OutputsStandCache(
        identity=_export_identity, outputs_stand=_export_stands, prefix="export"
    ),
    # For transient storage errors (gs://); the export itself is deterministic.
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=_worth_retrying,
)
def export_task(config: ExportConfig) -> dict:
    """Exports the SavedModel of `config.kind`, replacing a stale export at its path.

    Returns:
        kind, export_path, the checkpoint fingerprint, the signature's inputs and
        outputs, and `replaced`: where a stale export was moved, if one was.
    """
    started = time.monotonic()
    resolve_checkpoint(config.ckpt_path)  # a missing checkpoint fails before any move
    fingerprint = checkpoint_fingerprint(config.ckpt_path)
    replaced = None
    # The task also runs when the export is current but Prefect lost its record (a new
    # PREFECT_HOME): the export manifest then spares the re-export (DESIGN.md rule 5).
    exported = not export_is_current(config, fingerprint)
    if exported:
        # Exports refuse to overwrite: an older or different export is moved aside.
        replaced = _set_aside(config.export_path)
        export_model(config)
        fs, folder = storage.resolve(config.export_path.rstrip("/"))
        storage.write_json(
            fs,
            f"{folder}/{FINGERPRINT_NAME}",
            {"checkpoint": config.ckpt_path, "sha256_index": fingerprint},
        )
    signature = signature_summary(config.export_path)
    create_table_artifact(
        [
            {
                "kind": config.kind,
                "path": config.export_path,
                "inputs": ", ".join(f"{k}: {v}" for k, v in signature["inputs"].items()),
                "outputs": ", ".join(f"{k}: {v}" for k, v in signature["outputs"].items()),
            }
        ],
        key=f"delf-export-{config.kind.replace('_', '-')}",
        description=f"export_{config.kind}_model of {config.ckpt_path}",
    )
    size = size_on_disk(config.export_path)
    publish_summary(
        f"export_{config.kind}_model",  # the step's name (DESIGN.md rule 2)
        {
            "kind": config.kind,
            "path": f"`{config.export_path}`",
            "size on disk": "n/a" if size is None else format_bytes(size),
            "checkpoint": f"`{config.ckpt_path}`",
            "exported": "yes" if exported else "no: the export was current",
        },
        started=started,
        notes=[f"the stale export was moved to `{replaced}`"] if replaced else (),
    )
    return {
        "kind": config.kind,
        "export_path": config.export_path,
        "checkpoint_fingerprint": fingerprint,
        "replaced": replaced,
        **signature,
    }
