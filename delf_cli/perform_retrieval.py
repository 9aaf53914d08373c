"""`delf perform_retrieval`: the DELG instructions' evaluation on Revisited Oxford/Paris."""

from __future__ import annotations

import argparse
import logging

from delf_cli.flags import add_options, build_config
from delf_core.retrieval.perform import RetrievalConfig

log = logging.getLogger(__name__)


# The step config its flags are made from.
CONFIG = RetrievalConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    from delf_core.retrieval.metrics import PR_RANKS
    from delf_core.retrieval.perform import perform_retrieval

    try:
        result = perform_retrieval(build_config(args, RetrievalConfig))
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    for name in sorted(result.mean_average_precision):
        print(f"{name}: mAP={100 * result.mean_average_precision[name]:.2f}")
        # float(): NumPy 2 would print each value as np.float64(...).
        for kind, values in (("P", result.mean_precisions), ("R", result.mean_recalls)):
            print(f"  m{kind}@k{list(PR_RANKS)} {[round(100 * float(v), 2) for v in values[name]]}")
    timings = ", ".join(f"{k} {v:.2f}" for k, v in result.timings.items())
    print(f"Wrote {result.metrics_path} ({timings})")
    return 0
