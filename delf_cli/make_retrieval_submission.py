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
    from delf_core.retrieval.submission import make_retrieval_submission

    try:
        result = make_retrieval_submission(build_config(args, CONFIG))
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    timings = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    print(
        f"Wrote {result.path}: top {result.top.ids.shape[1]} of {len(result.index_ids)} index "
        f"images for {len(result.test_ids)} test images ({timings})"
    )
    return 0
