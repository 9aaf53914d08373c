"""`delf train`: the original's train.py flags, on the distributed custom loop."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_options, build_config
from delf_core.training.config import TrainConfig

# The step config its flags are made from.
CONFIG = TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    from delf_cli.progress import StepProgress
    from delf_core.training.loop import LabelOutOfRangeError
    from delf_core.training.run_record import train_recorded

    progress = StepProgress("train", "steps")
    # As the flow's train task: a logdir of a run on other data is set aside, not resumed.
    try:
        result = train_recorded(build_config(args, TrainConfig), on_steps=progress)
    except (ValueError, LabelOutOfRangeError) as error:
        print(f"delf train: error: {error}", file=sys.stderr)
        return 2
    finally:
        progress.close()
    if result.already_done:
        print(f"delf train: {args.logdir} is already at step {result.step}; nothing to do")
    else:
        print(
            f"delf train: step {result.step}, resumed from {result.resumed_from}; "
            f"metrics {result.metrics}"
        )
    return 0
