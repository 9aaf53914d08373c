"""Entry point of the `delf` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from types import ModuleType

from delf_cli.flags import normalize_bool_values

# One module per subcommand, named after the step (DESIGN.md rule 2). Each module has
# add_arguments(parser) and run(args) -> exit code, and is imported only when used,
# so `delf --help` stays fast.
SUBCOMMANDS = {
    "download": "GLDv2 download: parallel, checksummed, resumable (download_dataset.sh).",
    "make_mini_dataset": "Write a small GLDv2-layout dataset built from bundled photographs.",
    "serve_mirror": "Serve a GLDv2-layout folder over HTTP, with Range support.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delf",
        description="DELF/DELG training pipeline on the Google Landmarks Dataset v2.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def parse_args(argv: list[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The subcommand's module and its parsed flags; exits with usage on bad input."""
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or the "invalid choice" error and exits
        raise SystemExit(2)
    name = argv[0]
    module = importlib.import_module(f"delf_cli.{name}")
    sub = argparse.ArgumentParser(prog=f"delf {name}", description=SUBCOMMANDS[name])
    module.add_arguments(sub)
    return module, sub.parse_args(normalize_bool_values(sub, argv[1:]))


def main(argv: list[str] | None = None) -> int:
    module, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
