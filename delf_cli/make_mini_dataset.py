"""`delf make_mini_dataset`: write a small GLDv2-layout dataset built from bundled photographs."""

from __future__ import annotations

import argparse
import sys
import time

from delf_cli.flags import add_flag, add_options, build_config
from delf_core.gldv2 import layout
from delf_core.gldv2.mini import make_mini_dataset
from delf_core.gldv2.mini_config import DEFAULT_OUTPUT_DIR, MiniDatasetConfig

# The config its flags are made from; --output_dir is where it goes, not what it holds.
CONFIG = MiniDatasetConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser, "output_dir", DEFAULT_OUTPUT_DIR, "Folder or URL (gs://, memory://) to write to."
    )
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    start = time.monotonic()
    try:
        summary = make_mini_dataset(build_config(args, CONFIG), args.output_dir)
    except ValueError as error:
        print(f"delf make_mini_dataset: error: {error}", file=sys.stderr)
        return 2
    per_split = ", ".join(
        f"{split} {summary.images[split]} in {len(summary.tars[split])} tar(s)"
        for split in (layout.TRAIN, layout.INDEX, layout.TEST)
    )
    verb = "already complete" if summary.skipped else "wrote"
    print(
        f"make_mini_dataset: {verb} {summary.num_images} images ({per_split}), "
        f"{summary.landmarks[layout.TRAIN]} train + {summary.landmarks[layout.INDEX]} index "
        f"landmarks, {summary.total_bytes / 1e6:.1f} MB in {args.output_dir} "
        f"({time.monotonic() - start:.1f} s)"
    )
    return 0
