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
    from delf_cli.progress import StepProgress
    from delf_core.retrieval.current import perform_retrieval_if_stale
    from delf_core.retrieval.metrics import PR_RANKS

    # A bar on a terminal, else log lines: the search over a million distractors, and
    # the re-ranking, take a while.
    searching = StepProgress("global_search", "similarities")
    verifying = StepProgress("perform_retrieval", "queries")
    # As the flow's task: a metrics.txt of the same flags, ground truth and features is kept.
    try:
        outcome = perform_retrieval_if_stale(
            build_config(args, RetrievalConfig), on_query=verifying, on_block=searching
        )
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    finally:
        searching.close()
        verifying.close()
    if outcome.result is not None:
        mean_ap = outcome.result.mean_average_precision
        precisions, recalls = outcome.result.mean_precisions, outcome.result.mean_recalls
    else:
        mean_ap = outcome.saved.mean_average_precision
        precisions, recalls = outcome.saved.mean_precisions, outcome.saved.mean_recalls
    for name in sorted(mean_ap):
        print(f"{name}: mAP={100 * mean_ap[name]:.2f}")
        # float(): NumPy 2 would print each value as np.float64(...).
        for kind, values in (("P", precisions), ("R", recalls)):
            print(f"  m{kind}@k{list(PR_RANKS)} {[round(100 * float(v), 2) for v in values[name]]}")
    if not outcome.computed:
        print(
            f"{outcome.metrics_path} is current (same flags, ground truth and features); "
            "nothing computed"
        )
        return 0
    timings = ", ".join(f"{k} {v:.2f}" for k, v in outcome.timings.items())
    print(f"Wrote {outcome.metrics_path} ({timings})")
    return 0
