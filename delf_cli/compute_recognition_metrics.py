"""`delf compute_recognition_metrics`: GLDv2 recognition GAP and top-1 accuracy."""

from __future__ import annotations

import argparse

from delf_cli.metrics_report import add_path_flags, report
from delf_core.gldv2 import layout
from delf_core.retrieval import gldv2_metrics as gm


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_path_flags(parser, "landmarks", "'<landmark id> <score>'", layout.RECOGNITION_SOLUTION_NAME)


def _gap(predicted: dict, truth: dict) -> str:
    return f"Global Average Precision: {gm.global_average_precision(predicted, truth):f}"


def _gap_of_landmark_queries(predicted: dict, truth: dict) -> str:
    value = gm.global_average_precision(predicted, truth, ignore_non_gt_test_images=True)
    return f"Global Average Precision ignoring non-landmark queries: {value:f}"


def _top1_accuracy(predicted: dict, truth: dict) -> str:
    return f"Top-1 accuracy: {100.0 * gm.top1_accuracy(predicted, truth):.2f}"


def run(args: argparse.Namespace) -> int:
    return report(
        args,
        gm.RECOGNITION,
        "delf compute_recognition_metrics",
        [_gap, _gap_of_landmark_queries, _top1_accuracy],
    )
