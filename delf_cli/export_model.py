"""`delf export_model`: the legacy local export, whose `--block3_strides` defaults to off."""

from __future__ import annotations

import argparse

from delf_cli.export_flags import add_export_arguments, run_export
from delf_core.export.config import ExportConfig

KIND = "local"
# The step config its flags are made from.
CONFIG = ExportConfig
# The legacy script builds the model without block3 strides unless told otherwise.
LEGACY_DEFAULTS = {"block3_strides": False}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser, KIND, **LEGACY_DEFAULTS)


def run(args: argparse.Namespace) -> int:
    return run_export(args, KIND, **LEGACY_DEFAULTS)
