"""Rebuilds the feature part of a trained model and restores its weights."""

from __future__ import annotations

import logging

import tensorflow as tf

from delf_core.export.checkpoint_path import resolve_checkpoint
from delf_core.export.config import ExportConfig
from delf_core.model import DelfModel, ModelConfig

log = logging.getLogger(__name__)

_EMBEDDING_KERNEL = "model/embedding_layer/_kernel/.ATTRIBUTES/VARIABLE_VALUE"
_AUTOENCODER_KERNEL = "model/autoencoder/autoenc_conv1/_kernel/.ATTRIBUTES/VARIABLE_VALUE"


class CheckpointMismatchError(ValueError):
    """The export flags describe a different model than the checkpoint holds."""


def _check_structure(config: ExportConfig, shapes: dict[str, list[int]]) -> None:
    """Names the flag to change when the checkpoint's heads differ from the flags."""
    path = config.ckpt_path
    if config.has_global:
        trained_delg = _EMBEDDING_KERNEL in shapes
        if config.delg_global_features and not trained_delg:
            raise CheckpointMismatchError(
                f"{path} has no DELG global head (it was trained as DELF): "
                "export it with --nodelg_global_features"
            )
        if trained_delg and not config.delg_global_features:
            log.warning(
                "%s was trained with DELG global features; without "
                "--delg_global_features the export pools block4 as DELF does",
                path,
            )
        if trained_delg:
            dim = shapes[_EMBEDDING_KERNEL][-1]
            if dim != config.delg_embedding_layer_dim:
                raise CheckpointMismatchError(
                    f"{path} has a {dim}-d DELG embedding: pass --delg_embedding_layer_dim={dim}"
                )
    if config.has_local:
        trained_autoencoder = _AUTOENCODER_KERNEL in shapes
        if config.use_autoencoder and not trained_autoencoder:
            raise CheckpointMismatchError(
                f"{path} has no autoencoder: export it with --nouse_autoencoder"
            )
        if trained_autoencoder and config.use_autoencoder:
            dim = shapes[_AUTOENCODER_KERNEL][-1]
            if dim != config.autoencoder_dimensions:
                raise CheckpointMismatchError(
                    f"{path} has a {dim}-d autoencoder: pass --autoencoder_dimensions={dim}"
                )


def restore_feature_model(config: ExportConfig) -> DelfModel:
    """The model of `config` without classifiers, with the checkpoint's weights.

    Args:
        config: The export; `ckpt_path` may also name a checkpoint folder.

    Returns:
        A built `DelfModel` (num_classes None) whose every variable was restored.

    Raises:
        FileNotFoundError: No checkpoint at `ckpt_path`.
        CheckpointMismatchError: The flags describe heads the checkpoint lacks.
    """
    ckpt_path = resolve_checkpoint(config.ckpt_path)
    shapes = dict(tf.train.list_variables(ckpt_path))
    _check_structure(config, shapes)
    model = DelfModel(
        ModelConfig(
            num_classes=None,
            block3_strides=config.block3_strides,
            delg_global_features=config.delg_global_features and config.has_global,
            delg_gem_power=config.delg_gem_power,
            delg_embedding_layer_dim=config.delg_embedding_layer_dim,
            use_autoencoder=config.use_autoencoder and config.has_local,
            autoencoder_dimensions=config.autoencoder_dimensions,
            local_feature_map_channels=config.local_feature_map_channels,
        )
    )
    model.build_for(64)
    status = tf.train.Checkpoint(model=model).read(ckpt_path)
    try:
        status.assert_existing_objects_matched()
    except AssertionError as error:
        raise CheckpointMismatchError(
            f"{ckpt_path} does not hold every weight of the model the flags describe: {error}"
        ) from error
    # The classifiers (and, for a global export, the autoencoder) stay in the checkpoint.
    status.expect_partial()
    return model
