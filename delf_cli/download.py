"""`delf download NUM_TRAIN NUM_INDEX NUM_TEST`: the seed's download_dataset.sh, done right."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_options, build_config
from delf_cli.progress import BarProgress, make_progress
from delf_core.download import DownloadConfig, download

# The step config its flags are made from.
CONFIG = DownloadConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:

    try:
        config = build_config(args, DownloadConfig)
    except ValueError as error:
        print(f"delf download: error: {error}", file=sys.stderr)
        return 2
    progress = make_progress()
    try:
        report = download(config, progress)
    finally:
        if isinstance(progress, BarProgress):
            progress.close()
    print(
        f"delf download: {report.count('downloaded')} downloaded, "
        f"{report.count('skipped')} already done, {len(report.failed)} failed; "
        f"{report.images} images under {config.output_dir}"
    )
    left_out = [o for o in report.outcomes if o.skipped_members]
    if left_out:
        print(
            f"delf download: {sum(o.skipped_members for o in left_out)} tar members that are "
            f"not images at a/b/c/<id>.jpg were left out, from "
            + ", ".join(f"{o.split}/{o.name}" for o in left_out[:5])
            + (" ..." if len(left_out) > 5 else ""),
            file=sys.stderr,
        )
    for outcome in report.failed:
        print(
            f"delf download: failed: {outcome.split}/{outcome.name}: {outcome.error}",
            file=sys.stderr,
        )
    return 1 if report.failed else 0
