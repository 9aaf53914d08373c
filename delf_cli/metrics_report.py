"""What `delf compute_retrieval_metrics` and `compute_recognition_metrics` share: the
original scripts' two path flags, reading both files, and the report's layout."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from delf_cli.flags import add_flag
from delf_core.retrieval import gldv2_metrics as gm

_RULE = "*" * 46

Subsets = list[tuple[str, dict, dict]]
# One line of a report section: the figure of one subset's predictions against its truth.
Section = Callable[[dict, dict], str]


def add_path_flags(
    parser: argparse.ArgumentParser, column: str, described: str, example: str
) -> None:
    """--predictions_path and --solution_path, with the original scripts' defaults.

    Args:
      column: the column of predicted ids (`images` or `landmarks`), besides `id`.
      described: what a predictions file holds in it.
      example: the name of a solution file of the task.
    """
    add_flag(
        parser,
        "predictions_path",
        "/tmp/predictions.csv",
        f"CSV predictions file with a header and columns id,{column} ({described}); "
        "local path or gs://",
    )
    add_flag(
        parser,
        "solution_path",
        "/tmp/solution.csv",
        f"CSV solution file with a header and columns id,{column},Usage, "
        f"e.g. {example}; local path or gs://",
    )


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


def report(args: argparse.Namespace, task: str, name: str, sections: list[Section]) -> int:
    """Reads the flags' files and prints each section, as the original script does: a rule,
    then one line per subset. Returns the exit code."""
    subsets = load(args, task, name)
    if isinstance(subsets, int):
        return subsets
    for section in sections:
        print(_RULE)
        for label, predicted, truth in subsets:
            print(f"{label} {section(predicted, truth)}")
    return 0
