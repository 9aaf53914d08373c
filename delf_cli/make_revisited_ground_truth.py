"""`delf make_revisited_ground_truth`: a downloaded test/index split as a gnd_*.pkl file."""

from __future__ import annotations

import argparse
import logging

from delf_cli.flags import add_flag
from delf_core.gldv2.layout import DEFAULT_DATASET_DIR
from delf_core.gldv2.revisited import GROUND_TRUTH_NAME, write_revisited_ground_truth

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "dataset_dir", DEFAULT_DATASET_DIR, "the download's output folder")
    add_flag(parser, "output_path", GROUND_TRUTH_NAME, "the Revisited-format ground truth to write")


def run(args: argparse.Namespace) -> int:
    try:
        truth = write_revisited_ground_truth(args.dataset_dir, args.output_path)
    except (OSError, ValueError, KeyError) as error:
        log.error("%s", error)
        return 1
    print(
        f"Wrote {args.output_path}: {len(truth['qimlist'])} queries against "
        f"{len(truth['imlist'])} index images (images as <split>/a/b/c/<id>.jpg)"
    )
    return 0
