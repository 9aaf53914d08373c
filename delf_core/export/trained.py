"""The export of a trained model: the export flags its training run's flags imply."""

from __future__ import annotations

from typing import Any

from delf_core import storage
from delf_core.export.config import GLOBAL, LOCAL, LOCAL_AND_GLOBAL, ExportConfig
from delf_core.training.config import TrainConfig
from delf_core.training.outputs import WEIGHTS_NAME


def export_config(kind: str, train: TrainConfig, export_path: str, **flags) -> ExportConfig:
    """The export of `kind` (original script's defaults) for the model `train` trained.

    The model flags the checkpoint's structure depends on are taken from `train`; the
    global exporter keeps its own block3-strides and autoencoder defaults, as the
    original builds its model without them.

    Args:
        kind: local, global or local_and_global.
        train: The training run's flags: `<logdir>/delf_weights` is exported.
        export_path: The SavedModel folder.
        **flags: Other export flags, over the kind's defaults.
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
