"""`delf export_local_and_global_model`: the original script of that name, same flags."""

from __future__ import annotations

import argparse

from delf_cli.export_flags import add_export_arguments, run_export

KIND = "local_and_global"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_export_arguments(parser, KIND)


def run(args: argparse.Namespace) -> int:
    return run_export(args, KIND)
