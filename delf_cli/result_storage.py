"""`delf result_storage --url=gs://B/prefect-results`: shared storage for the flow's cache."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_flag
from delf_cli.prefect_server import allow_slow_start, start_failure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "url", None, "gs://bucket/folder (or a local folder) for Prefect's results")
    add_flag(parser, "name", "gldv2-results", "the name of the block to save")


def run(args: argparse.Namespace) -> int:
    if not args.url:
        print("delf result_storage: error: give --url", file=sys.stderr)
        return 2
    allow_slow_start()
    from flows.result_storage import SETTING, save_result_storage

    try:
        slug = save_result_storage(args.url, args.name)
    except ValueError as error:
        print(f"delf result_storage: error: {error}", file=sys.stderr)
        return 2
    except RuntimeError as error:
        if (message := start_failure(error)) is None:
            raise
        print(f"delf result_storage: error: {message}", file=sys.stderr)
        return 1
    print(f"saved block {slug} for {args.url}")
    print("set it where flows run (the worker's environment, or the work pool's env):")
    print(f"  {SETTING}={slug}")
    return 0
