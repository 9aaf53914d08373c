"""`delf compute_recognition_metrics`: GLDv2 recognition GAP and top-1 accuracy."""

from __future__ import annotations

import argparse

from delf_cli.compute_retrieval_metrics import load
from delf_cli.flags import add_flag
from delf_core.retrieval import gldv2_metrics as gm

_NAME = "delf compute_recognition_metrics"
_RULE = "*" * 46


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "predictions_path",
        "/tmp/predictions.csv",
        "CSV predictions file with a header and columns id,landmarks ('<landmark id> "
        "<score>'); local path or gs://",
    )
    add_flag(
        parser,
        "solution_path",
        "/tmp/solution.csv",
        "CSV solution file with a header and columns id,landmarks,Usage, e.g. "
        "recognition_solution_v2.1.csv; local path or gs://",
    )


def run(args: argparse.Namespace) -> int:
    subsets = load(args, gm.RECOGNITION, _NAME)
    if isinstance(subsets, int):
        return subsets
    print(_RULE)
    for label, predicted, truth in subsets:
        value = gm.global_average_precision(predicted, truth)
        print(f"{label} Global Average Precision: {value:f}")
    print(_RULE)
    for label, predicted, truth in subsets:
        value = gm.global_average_precision(predicted, truth, ignore_non_gt_test_images=True)
        print(f"{label} Global Average Precision ignoring non-landmark queries: {value:f}")
    print(_RULE)
    for label, predicted, truth in subsets:
        print(f"{label} Top-1 accuracy: {100.0 * gm.top1_accuracy(predicted, truth):.2f}")
    return 0
