"""`delf export_local_and_global_model`: the original script of that name, same flags."""

from __future__ import annotations

import argparse

from delf_cli.export_flags import add_export_arguments, run_export
from delf_core.export.config import ExportConfig

KIND = "local_and_global"
# The step config its flags are made from.
CONFIG = ExportConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser, KIND)


def run(args: argparse.Namespace) -> int:
    return run_export(args, KIND)
