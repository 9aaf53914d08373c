"""The mini dataset as the flow's data source: written once, served on 127.0.0.1 while needed."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

from prefect import get_run_logger, task

from delf_core import storage
from delf_core.gldv2.mini import MiniDatasetConfig, make_mini_dataset, mini_dataset_stands
from delf_core.gldv2.mirror import MirrorServer
from flows.caching import OutputsStandCache
from flows.run_summary import COUNTED


def _identity(inputs: dict[str, Any]) -> str:
    config = dataclasses.asdict(inputs.get("config") or MiniDatasetConfig())
    return json.dumps({"config": config, "output_dir": inputs["output_dir"]}, sort_keys=True)


def _stands(inputs: dict[str, Any]) -> bool:
    return mini_dataset_stands(inputs.get("config") or MiniDatasetConfig(), inputs["output_dir"])


@task(
    name="make_mini_dataset",
    tags=["make_mini_dataset"],
    **COUNTED,
    task_run_name="make_mini_dataset",
    cache_policy=OutputsStandCache(identity=_identity, outputs_stand=_stands, prefix="mini"),
)
def make_mini_mirror(output_dir: str, config: MiniDatasetConfig | None = None) -> dict:
    """Writes the mini dataset in the GLDv2 bucket layout under `output_dir`."""
    summary = make_mini_dataset(config or MiniDatasetConfig(), output_dir)
    return {"output_dir": output_dir, "images": summary.images, "tars": summary.tars}


@contextlib.contextmanager
def served(output_dir: str) -> Iterator[str]:
    """Serves the local folder `output_dir` on 127.0.0.1; yields its base URL."""
    fs, root = storage.resolve(output_dir)
    if not storage.is_local(fs):
        raise ValueError(f"{output_dir}: the mini mirror serves a local folder only")
    with MirrorServer(root) as server:
        get_run_logger().info("mini mirror at %s", server.url)
        yield server.url
