"""`delf compute_retrieval_metrics`: GLDv2 retrieval mAP@100, precision@k, first-hit position."""

from __future__ import annotations

import argparse

from delf_cli.metrics_report import add_path_flags, report
from delf_core.gldv2 import layout
from delf_core.retrieval import gldv2_metrics as gm

# The ranks the original script prints mean precision at.
_PRINTED_RANKS = (1, 5, 10, 50, 100)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_flags(
        parser,
        "images",
        "space-separated index image ids, best first",
        layout.RETRIEVAL_SOLUTION_NAME,
    )


def _mean_average_precision(predicted: dict, truth: dict) -> str:
    return f"Mean Average Precision: {gm.mean_average_precision(predicted, truth):f}"


def _mean_precisions(predicted: dict, truth: dict) -> str:
    precisions = 100.0 * gm.mean_precisions(predicted, truth)
    return "Mean precisions: " + ", ".join(
        f"P@{k}: {precisions[k - 1]:.2f}" for k in _PRINTED_RANKS
    )


def _mean_position(predicted: dict, truth: dict) -> str:
    mean, median = gm.mean_median_position(predicted, truth)
    return f"Mean position: {mean:.2f}, median position: {median:.2f}"


def run(args: argparse.Namespace) -> int:
    return report(
        args,
        gm.RETRIEVAL,
        "delf compute_retrieval_metrics",
        [_mean_average_precision, _mean_precisions, _mean_position],
    )
