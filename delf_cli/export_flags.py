"""Flags shared by the export subcommands, with each original script's defaults."""

from __future__ import annotations

import argparse
import logging

from delf_core.cli_flags import add_bool_flag, add_flag, positive_int
from delf_core.export.config import GLOBAL, LOCAL, LOCAL_AND_GLOBAL, POOL_TYPES, ExportConfig

log = logging.getLogger(__name__)


def _scales_list(text: str) -> tuple[float, ...]:
    try:
        scales = tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated numbers, got {text!r}"
        ) from error
    if not scales or min(scales) <= 0:
        raise argparse.ArgumentTypeError(f"expected positive scales, got {text!r}")
    return scales


def add_export_arguments(parser: argparse.ArgumentParser, kind: str, **defaults) -> None:
    """The flags of `export_<kind>_model`; `defaults` overrides the kind's defaults."""
    d = ExportConfig.for_kind(kind, **defaults)
    add_flag(parser, "ckpt_path", "/tmp/delf-logdir/delf-weights", "trained weights to export")
    add_flag(
        parser, "export_path", "/tmp/delf-model", "SavedModel folder to create (must not exist)"
    )
    if kind in (LOCAL, LOCAL_AND_GLOBAL):
        add_bool_flag(
            parser, "block3_strides", d.block3_strides, "the model was trained with block3 strides"
        )
        add_flag(parser, "iou", d.iou, "IoU of local-feature non-maximum suppression", type=float)
        add_bool_flag(
            parser, "use_autoencoder", d.use_autoencoder, "local descriptors from the autoencoder"
        )
        add_flag(
            parser,
            "autoencoder_dimensions",
            d.autoencoder_dimensions,
            "autoencoder bottleneck size",
            type=positive_int,
        )
        add_flag(
            parser,
            "local_feature_map_channels",
            d.local_feature_map_channels,
            "channels the autoencoder reconstructs",
            type=positive_int,
        )
    if kind in (GLOBAL, LOCAL_AND_GLOBAL):
        add_bool_flag(
            parser,
            "delg_global_features",
            d.delg_global_features,
            "DELG global head (GeM + embedding), else DELF's pooled block4",
        )
        add_flag(parser, "delg_gem_power", d.delg_gem_power, "GeM power", type=float)
        add_flag(
            parser,
            "delg_embedding_layer_dim",
            d.delg_embedding_layer_dim,
            "DELG global descriptor size",
            type=positive_int,
        )
    if kind == GLOBAL:
        add_flag(
            parser,
            "input_scales_list",
            None,
            "comma-separated fixed scales; the signature then takes only the image",
            type=_scales_list,
        )
        add_flag(
            parser,
            "multi_scale_pool_type",
            d.multi_scale_pool_type,
            "pooling of the per-scale descriptors",
            choices=POOL_TYPES,
        )
        add_bool_flag(
            parser,
            "normalize_global_descriptor",
            d.normalize_global_descriptor,
            "L2-normalise the global descriptor(s)",
        )


def config_from_args(args: argparse.Namespace, kind: str, **defaults) -> ExportConfig:
    fields = {k: v for k, v in vars(args).items() if k in ExportConfig.__dataclass_fields__}
    return ExportConfig.for_kind(kind, **{**defaults, **fields})


def run_export(args: argparse.Namespace, kind: str, **defaults) -> int:
    """Runs one export; a bad flag or checkpoint is one line on stderr and exit code 1.

    A folder that holds a current export of the same checkpoint and flags is kept, as
    the flow keeps it; one that holds anything else is refused (ExportExistsError).
    """
    from delf_core.export import CheckpointMismatchError, ExportExistsError
    from delf_core.export.current import export_if_stale

    config = config_from_args(args, kind, **defaults)
    try:
        outcome = export_if_stale(config)
    except (ExportExistsError, FileNotFoundError, CheckpointMismatchError, ValueError) as error:
        log.error("%s", error)
        return 1
    if not outcome.exported:
        print(
            f"{config.export_path} holds a current {kind.replace('_', ' ')} export of "
            f"{config.ckpt_path}; nothing to do"
        )
        return 0
    print(f"Exported the {kind.replace('_', ' ')} model to {config.export_path.rstrip('/')}")
    return 0
