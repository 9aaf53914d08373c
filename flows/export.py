"""The export steps (export_local_model, ...) as one Prefect task, cached on config and weights."""

from __future__ import annotations

import time

from prefect import task

from delf_core.export import ExportConfig
from delf_core.export.current import export_identity, export_if_stale, export_is_current
from delf_core.progress import format_bytes
from flows.caching import OutputsStandCache
from flows.retries import unless_bad_path_or_input
from flows.run_summary import COUNTED
from flows.summary import publish_summary, size_on_disk


@task(
    name="export",
    tags=["export"],
    **COUNTED,
    task_run_name="export_{config.kind}_model",
    cache_policy=OutputsStandCache(
        identity=lambda inputs: export_identity(inputs["config"]),
        outputs_stand=lambda inputs: export_is_current(inputs["config"]),
        prefix="export",
    ),
    # For transient storage errors (gs://); the export itself is deterministic.
    retries=1,
    retry_delay_seconds=10,
    retry_condition_fn=unless_bad_path_or_input,
)
def export_task(config: ExportConfig) -> dict:
    """Exports the SavedModel of `config.kind`, replacing a stale export at its path.

    Returns:
        kind, export_path, the checkpoint fingerprint, the signature's inputs and
        outputs, and `replaced`: where a stale export was moved, if one was.
    """
    from delf_core.export.signature import signature_summary  # TensorFlow: only on a run

    started = time.monotonic()
    outcome = export_if_stale(config, replace_stale=True)
    signature = signature_summary(config.export_path)
    size = size_on_disk(config.export_path)
    publish_summary(
        f"export_{config.kind}_model",  # the step's name (DESIGN.md rule 2)
        {
            "kind": config.kind,
            "path": f"`{config.export_path}`",
            "size on disk": "n/a" if size is None else format_bytes(size),
            "checkpoint": f"`{config.ckpt_path}`",
            "exported": "yes" if outcome.exported else "no: the export was current",
            "inputs": ", ".join(f"{k}: {v}" for k, v in signature["inputs"].items()),
            "outputs": ", ".join(f"{k}: {v}" for k, v in signature["outputs"].items()),
        },
        started=started,
        notes=[f"the stale export was moved to `{outcome.replaced}`"] if outcome.replaced else (),
    )
    return {
        "kind": config.kind,
        "export_path": config.export_path,
        "checkpoint_fingerprint": outcome.fingerprint,
        "replaced": outcome.replaced,
        **signature,
    }
