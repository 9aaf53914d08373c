"""The parameters of a deployment in deployments/prefect.yaml, to run its flow without a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

DEPLOYMENTS_FILE = "deployments/prefect.yaml"


def deployment_parameters(name: str, path: str = DEPLOYMENTS_FILE) -> dict[str, Any]:
    """The `parameters` of deployment `name` in the prefect.yaml at `path`.

    Raises:
        ValueError: No such file or deployment (naming the ones there are).
    """
    file = Path(path)
    if not file.is_file():
        raise ValueError(f"{path}: no such file; run from the repository root or give the file")
    deployments = yaml.safe_load(file.read_text()).get("deployments") or []
    for deployment in deployments:
        if deployment.get("name") == name:
            return dict(deployment.get("parameters") or {})
    names = ", ".join(d.get("name", "?") for d in deployments)
    raise ValueError(f"{path}: no deployment {name!r}; there are: {names}")


def apply_overrides(parameters: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`name=<json>` overrides, as `prefect deployment run --param`: each replaces a parameter.

    A value that is not JSON is taken as a string, as Prefect does.
    """
    result = dict(parameters)
    for override in overrides:
        name, sep, value = override.partition("=")
        if not sep or not name:
            raise ValueError(f"--param {override}: use name=<json value>")
        try:
            result[name] = json.loads(value)
        except json.JSONDecodeError:
            result[name] = value
    return result
