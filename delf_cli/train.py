"""`delf train`: the original's train.py flags, on the distributed custom loop."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_options, build_config
from delf_core.training.cluster_config import ClusterConfig
from delf_core.training.config import TrainConfig

# The step config its flags are made from.
CONFIG = TrainConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)
    add_options(parser, ClusterConfig)


def run(args: argparse.Namespace) -> int:
    from delf_cli.progress import StepProgress
    from delf_core.training.dask_training import WorkerFailedError, train_on_dask
    from delf_core.training.run_record import train_recorded

    progress = StepProgress("train", "steps")
    try:
        config = build_config(args, TrainConfig)
        cluster = build_config(args, ClusterConfig)
        if cluster.enabled:
            # One process per Dask worker, each a `train_recorded` under TF_CONFIG.
            result = train_on_dask(config, cluster, on_steps=progress)
        else:
            # As the flow's train task: a logdir of a run on other data is set aside.
            result = train_recorded(config, on_steps=progress)
    except ValueError as error:  # bad flags or records; LabelOutOfRangeError is one
        print(f"delf train: error: {error}", file=sys.stderr)
        return 2
    except WorkerFailedError as error:  # a TF worker died or hung: rerun to resume
        print(f"delf {error}", file=sys.stderr)
        return 1
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
