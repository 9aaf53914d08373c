"""The GLDv2 pipeline flow: download, then build the TFRecords."""

from __future__ import annotations

from typing import Any

from prefect import flow

from delf_core import storage
from delf_core.gldv2 import layout
from flows.build_image_dataset import build_image_dataset_flow, seed_build_config
from flows.download import download_gldv2


@flow(name="gldv2")
def gldv2(
    num_train: int = 500,
    num_index: int = 100,
    num_test: int = 20,
    dataset_dir: str = "gldv2_dataset",
    base_url: str = layout.DEFAULT_BASE_URL,
    max_workers: int = 8,
    tfrecord_dir: str | None = None,
    num_shards: int = 128,
    validation_split_size: float = 0.2,
    seed: int = 0,
    runner: str = "FnApiRunner",
    pipeline_options: list[str] | None = None,
) -> dict[str, Any]:
    """Downloads GLDv2 and builds the train/validation(/test) TFRecords of the seed README.

    Test shards are built when test tars are downloaded. A rerun skips every finished
    tar and an identical TFRecord build.
    """
    download = download_gldv2(
        num_train,
        num_index,
        num_test,
        output_dir=dataset_dir,
        base_url=base_url,
        max_workers=max_workers,
    )
    config = seed_build_config(
        dataset_dir,
        tfrecord_dir or storage.join(dataset_dir, "tfrecord"),
        with_test=num_test > 0,
        num_shards=num_shards,
        validation_split_size=validation_split_size,
        seed=seed,
    )
    tfrecords = build_image_dataset_flow(config, runner, pipeline_options)
    return {"download": download, "tfrecords": tfrecords}
