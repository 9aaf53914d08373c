"""`delf make_retrieval_submission`: the GLDv2 retrieval challenge's submission CSV."""

from __future__ import annotations

import argparse
import logging

from delf_cli.flags import add_options, build_config
from delf_core.retrieval.submission import RetrievalSubmissionConfig

log = logging.getLogger(__name__)

# The step config its flags are made from.
CONFIG = RetrievalSubmissionConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    from delf_core.retrieval.submission import make_retrieval_submission_if_stale

    # As the flow's task: a CSV of the same ids, descriptor files and flags is kept.
    try:
        config = build_config(args, CONFIG)
        result = make_retrieval_submission_if_stale(config)
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    if result is None:
        print(
            f"{config.output_path} is current (same ids, descriptor files and flags); "
            "nothing computed"
        )
        return 0
    timings = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    print(
        f"Wrote {result.path}: top {result.top.ids.shape[1]} of {len(result.index_ids)} index "
        f"images for {len(result.test_ids)} test images ({timings})"
    )
    return 0
