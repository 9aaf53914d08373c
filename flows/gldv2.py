"""The GLDv2 pipeline as one flow: download, build, train, test the model, evaluate retrieval."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import Any

from prefect import flow, get_run_logger

from delf_core import storage
from delf_core.gldv2.mini_config import MiniDatasetConfig
from flows.download import run_download
from flows.mini_mirror import make_mini_mirror, served
from flows.params import (
    DATASET_DIR,
    MINI_MIRROR_DIR,
    TFRECORD_DIR,
    BuildParams,
    DownloadParams,
    EvaluateParams,
    TrainParams,
)
from flows.params import train_config as train_config_of
from flows.summary import publish_summary


@contextlib.contextmanager
def _source(download: DownloadParams, output_root: str) -> Iterator[str]:
    """The base URL to download from: the bucket, or the mini dataset served locally."""
    if not download.mini_mirror:
        yield download.base_url
        return
    mirror_dir = storage.join(output_root, MINI_MIRROR_DIR)
    available = MiniDatasetConfig().num_tars()
    wanted = download.to_config().tar_counts()
    too_many = {split: n for split, n in wanted.items() if n > available[split]}
    if too_many:
        raise ValueError(f"the mini mirror has {available} tars; asked for {too_many}")
    make_mini_mirror(mirror_dir)
    with served(mirror_dir) as url:
        yield url


# The defaults: gldv2-full's shape. The models are frozen, so sharing them is safe.
FULL_DOWNLOAD = DownloadParams()
FULL_BUILD = BuildParams()
FULL_TRAIN = TrainParams()
FULL_EVALUATE = EvaluateParams()


@flow(name="gldv2")
def gldv2(
    output_root: str = "gldv2",
    download: DownloadParams = FULL_DOWNLOAD,
    build: BuildParams = FULL_BUILD,
    train: TrainParams | None = FULL_TRAIN,
    evaluate: EvaluateParams = FULL_EVALUATE,
) -> dict[str, Any]:
    """Downloads GLDv2, builds the TFRecords, trains, tests the model and evaluates retrieval.

    Everything is written under `output_root` (a local path or gs://) with the seed
    README's names: gldv2_dataset/ (tars, images, CSVs), gldv2_dataset/tfrecord/,
    gldv2_training/, gldv2_model_<kind>/, data/features/, matched_images.png and
    results/gldv2/metrics.txt. `train=None` stops after the TFRecords. Retrieval needs a
    DELG model and test and index tars; otherwise it is skipped, saying why.

    Each step is cached on its inputs and parameters while its outputs stand: a new run
    skips what finished, a deleted output reruns its step and the steps after it, and a
    retry of a failed run redoes only the failed tasks and what depends on them.
    """
    logger = get_run_logger()
    fs, path = storage.resolve(output_root)
    if storage.is_local(fs):
        # Cache keys name the outputs: a relative root would name another checkout's too.
        output_root = os.path.abspath(path)
    dataset_dir = storage.join(output_root, DATASET_DIR)
    result: dict[str, Any] = {}
    with _source(download, output_root) as base_url:
        config = dataclasses.replace(download.to_config(output_dir=dataset_dir), base_url=base_url)
        result["download"] = run_download(
            config, use_dask=download.use_dask, dask_address=download.dask_address
        )
    # Each later step's flow is imported when its turn comes: Beam and TensorFlow take
    # tens of seconds to load, which the download need not wait for.
    from flows.build_image_dataset import build_image_dataset, seed_build_paths

    config = build.to_config(
        **seed_build_paths(
            dataset_dir, storage.join(output_root, TFRECORD_DIR), with_test=download.num_test > 0
        )
    )
    result["tfrecords"] = build_image_dataset(config, build.runner, build.pipeline_options)
    outputs = {"dataset": dataset_dir, "tfrecords": config.output_directory}
    if train is not None:
        from flows.check_model import check_model
        from flows.train import train_task

        train_config = train_config_of(train, output_root)
        result["train"] = train_task(train_config)
        outputs["checkpoints"] = train_config.logdir
        if evaluate.check_model:
            tested = check_model(train_config, evaluate.check_model_config(), dataset_dir)
            result["check_model"] = tested
            outputs.update(
                {f"export ({kind})": path for kind, path in tested["exports"].items()},
                features=tested["features_dir"],
                matched_images=tested["matched_image"],
            )
        if evaluate.retrieval:
            result["retrieval"] = _perform_retrieval_if_possible(
                train_config, evaluate, download, dataset_dir
            )
            if "metrics_path" in result["retrieval"]:
                outputs["metrics"] = result["retrieval"]["metrics_path"]
    result["outputs"] = outputs
    publish_summary("outputs", {name: f"`{path}`" for name, path in outputs.items()})
    logger.info("gldv2 outputs: %s", outputs)
    return result


def _perform_retrieval_if_possible(train_config, evaluate, download, dataset_dir) -> dict:
    if not (download.num_test and download.num_index):
        reason = "retrieval needs test and index tars: download num_test and num_index > 0"
        get_run_logger().info("perform_retrieval skipped: %s", reason)
        return {"skipped": reason}
    from flows.perform_retrieval import perform_retrieval

    return perform_retrieval(train_config, evaluate.perform_retrieval_config(), dataset_dir)
