"""`delf gldv2`: run the whole pipeline flow here, with a deployment's parameters."""

from __future__ import annotations

import argparse
import sys

from delf_cli.deployment_params import DEPLOYMENTS_FILE, apply_overrides, deployment_parameters
from delf_cli.flags import add_flag
from delf_cli.prefect_server import allow_slow_start, start_failure


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "deployment",
        "gldv2-mini",
        f"the deployment of {DEPLOYMENTS_FILE} whose parameters to use",
    )
    add_flag(parser, "deployments_file", DEPLOYMENTS_FILE, "the prefect.yaml to read")
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="replace one flow parameter, as `prefect deployment run --param`",
    )


def run(args: argparse.Namespace) -> int:
    try:
        parameters = apply_overrides(
            deployment_parameters(args.deployment, args.deployments_file), args.param
        )
    except ValueError as error:
        print(f"delf gldv2: error: {error}", file=sys.stderr)
        return 2
    allow_slow_start()
    from flows.gldv2 import gldv2

    try:
        state = gldv2(**parameters, return_state=True)
    except RuntimeError as error:
        if (message := start_failure(error)) is None:
            raise
        print(f"delf gldv2: error: {message}", file=sys.stderr)
        return 1
    if not state.is_completed():
        print(f"delf gldv2: the run ended {state.name}: {state.message}", file=sys.stderr)
        return 1
    outputs = state.result()["outputs"]
    print("gldv2 outputs:")
    for name, location in outputs.items():
        print(f"  {name:<26} {location}")
    return 0
