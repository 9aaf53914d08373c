"""Flags shared by the export subcommands, with each original script's defaults."""

from __future__ import annotations

import argparse
import logging

from delf_cli.flags import add_options, option_values
from delf_core.export.config import DEFAULTS_OF_KIND, FLAGS_OF_KIND, ExportConfig

log = logging.getLogger(__name__)


def add_export_arguments(parser: argparse.ArgumentParser, kind: str, **defaults) -> None:
    """The flags of `export_<kind>_model`; `defaults` overrides the kind's defaults."""
    add_options(
        parser,
        ExportConfig,
        only=FLAGS_OF_KIND[kind],
        defaults={**DEFAULTS_OF_KIND[kind], **defaults},
    )


def config_from_args(args: argparse.Namespace, kind: str, **defaults) -> ExportConfig:
    return ExportConfig.for_kind(kind, **{**defaults, **option_values(args, ExportConfig)})


def run_export(args: argparse.Namespace, kind: str, **defaults) -> int:
    """Runs one export; a bad flag or checkpoint is one line on stderr and exit code 1.

    A folder that holds a current export of the same checkpoint and flags is kept, as
    the flow keeps it; one that holds anything else is refused (ExportExistsError).
    """
    from delf_core.export import CheckpointMismatchError, ExportExistsError
    from delf_core.export.current import export_if_stale

    try:
        config = config_from_args(args, kind, **defaults)
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
