"""`delf compute_retrieval_metrics`: GLDv2 retrieval mAP@100, precision@k, first-hit position."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_flag
from delf_core.retrieval import gldv2_metrics as gm

_NAME = "delf compute_retrieval_metrics"
_RULE = "*" * 46
# The ranks the original script prints mean precision at.
_PRINTED_RANKS = (1, 5, 10, 50, 100)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "predictions_path",
        "/tmp/predictions.csv",
        "CSV predictions file with a header and columns id,images (space-separated index "
        "image ids, best first); local path or gs://",
    )
    add_flag(
        parser,
        "solution_path",
        "/tmp/solution.csv",
        "CSV solution file with a header and columns id,images,Usage, e.g. "
        "retrieval_solution_v2.1.csv; local path or gs://",
    )


Subsets = list[tuple[str, dict, dict]]


def load(args: argparse.Namespace, task: str, name: str) -> Subsets | int:
    """(label, predictions, solution) of the Public and Private subsets the flags name,
    or an exit code after a clear error."""
    print("Reading solution...")
    try:
        solution = gm.read_solution(args.solution_path, task)
    except (OSError, ValueError) as error:
        return _error(name, "solution_path", args.solution_path, error)
    print("done!")
    print("Reading predictions...")
    try:
        predictions = gm.read_predictions(args.predictions_path, solution, task)
    except (OSError, ValueError) as error:
        return _error(name, "predictions_path", args.predictions_path, error)
    print("done!")
    return [
        ("(Public) ", predictions.public, solution.public),
        ("(Private)", predictions.private, solution.private),
    ]


def _error(name: str, flag: str, path: str, error: Exception) -> int:
    if isinstance(error, FileNotFoundError):
        message = f"no such file: {path}"
    elif isinstance(error, OSError):
        message = f"cannot read {path} ({error})"
    else:  # the readers' ValueErrors name the file and line already
        message = str(error)
    print(f"{name}: error: --{flag}: {message}", file=sys.stderr)
    return 1


def run(args: argparse.Namespace) -> int:
    subsets = load(args, gm.RETRIEVAL, _NAME)
    if isinstance(subsets, int):
        return subsets
    print(_RULE)
    for label, predicted, truth in subsets:
        value = gm.mean_average_precision(predicted, truth)
        print(f"{label} Mean Average Precision: {value:f}")
    print(_RULE)
    for label, predicted, truth in subsets:
        precisions = 100.0 * gm.mean_precisions(predicted, truth)
        text = ", ".join(f"P@{k}: {precisions[k - 1]:.2f}" for k in _PRINTED_RANKS)
        print(f"{label} Mean precisions: {text}")
    print(_RULE)
    for label, predicted, truth in subsets:
        mean, median = gm.mean_median_position(predicted, truth)
        print(f"{label} Mean position: {mean:.2f}, median position: {median:.2f}")
    return 0
