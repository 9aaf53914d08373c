"""The GLDv2 pipeline as one flow: download, build, train, test the model, evaluate retrieval."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Iterator
from typing import Annotated, Any

from prefect import flow, get_run_logger
from pydantic import Field

from delf_core import storage
from delf_core.gldv2.mini_config import MiniDatasetConfig
from delf_core.progress import format_bytes
from delf_core.training.cluster_config import ClusterConfig
from flows.download import run_download
from flows.guard import output_root_lease
from flows.healing import resume_after_crash
from flows.mini_mirror import make_mini_mirror, served
from flows.notify import load_notifier, notify_on_failure
from flows.params import (
    DATASET_DIR,
    MINI_MIRROR_DIR,
    TFRECORD_DIR,
    BuildParams,
    DownloadParams,
    EvaluateParams,
    TrainParams,
    train_cluster,
)
from flows.params import train_config as train_config_of
from flows.run_summary import RunSummary


@contextlib.contextmanager
def _source(download: DownloadParams, output_root: str) -> Iterator[str]:
    """The base URL to download from: the bucket, or the mini dataset served locally."""
    if not download.mini_mirror:
        yield download.base_url
        return
    mirror_dir = storage.join(output_root, MINI_MIRROR_DIR)
    make_mini_mirror(mirror_dir)
    with served(mirror_dir) as url:
        yield url


def _check_mini_mirror(download: DownloadParams) -> None:
    """Refuses more tars than the mini mirror has, before anything is written."""
    if not download.mini_mirror:
        return
    available = MiniDatasetConfig().num_tars()
    wanted = download.to_config().tar_counts()
    too_many = {split: n for split, n in wanted.items() if n > available[split]}
    if too_many:
        raise ValueError(f"the mini mirror has {available} tars; asked for {too_many}")


# The defaults: gldv2-full's shape. The models are frozen, so sharing them is safe.
FULL_DOWNLOAD = DownloadParams()
FULL_BUILD = BuildParams()
FULL_TRAIN = TrainParams()
FULL_EVALUATE = EvaluateParams()


@flow(name="gldv2", on_failure=[notify_on_failure], on_crashed=[notify_on_failure])
def gldv2(
    output_root: str = "gldv2",
    download: DownloadParams = FULL_DOWNLOAD,
    build: BuildParams = FULL_BUILD,
    train: TrainParams | None = FULL_TRAIN,
    evaluate: EvaluateParams = FULL_EVALUATE,
    max_crash_resumes: Annotated[int, Field(ge=0)] = 3,
    notify_block: str | None = None,
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

    The artifact `gldv2-run` sums the run up, a cached rerun and a failed run too: per
    step its state, whether it ran or came from cache, its duration, key figures and
    output; each step has its own `gldv2-<step>` summary.

    A run of a deployment that crashes is resumed by the server up to
    `max_crash_resumes` times in a row. `notify_block` names a Prefect notification
    block (`<type>/<name>`) told when the run fails or crashes. One run at a time holds
    `output_root`; another is refused at once.
    """
    logger = get_run_logger()
    started = time.monotonic()
    resume_after_crash(max_crash_resumes)
    if notify_block:
        load_notifier(notify_block)
    _check_mini_mirror(download)
    cluster = None if train is None else train_cluster(train)  # a bad address fails now
    fs, path = storage.resolve(output_root)
    if storage.is_local(fs):
        # Cache keys name the outputs: a relative root would name another checkout's too.
        output_root = os.path.abspath(path)
    summary = RunSummary()
    result: dict[str, Any] = {"outputs": {}}
    with output_root_lease(output_root):
        try:
            _run_steps(summary, result, output_root, download, build, train, cluster, evaluate)
        finally:
            # Also for a failed run: the table shows which step failed and what finished.
            summary.publish(result["outputs"], started)
    logger.info("gldv2 outputs: %s", result["outputs"])
    return result


def _run_steps(
    summary: RunSummary,
    result: dict[str, Any],
    output_root: str,
    download: DownloadParams,
    build: BuildParams,
    train: TrainParams | None,
    cluster: ClusterConfig | None,
    evaluate: EvaluateParams,
) -> None:
    """The flow's steps in order, each a row of `summary`; fills `result` as they end."""
    outputs = result["outputs"]
    dataset_dir = storage.join(output_root, DATASET_DIR)
    with summary.step("download", dataset_dir) as row, _source(download, output_root) as url:
        config = dataclasses.replace(download.to_config(output_dir=dataset_dir), base_url=url)
        got = run_download(config, use_dask=download.use_dask, dask_address=download.dask_address)
        result["download"] = got
        # Its tasks may run on Dask workers, which the hooks of this process do not see.
        row.ran, row.cached = got["ran"], got["cached"]
        row.figures = f"{got['tars']} tars, {got['images']} images, {format_bytes(got['bytes'])}"
    outputs["dataset"] = dataset_dir
    # Each later step's flow is imported when its turn comes: Beam and TensorFlow take
    # tens of seconds to load, which the download need not wait for.
    from flows.build_image_dataset import build_image_dataset, seed_build_paths

    config = build.to_config(
        **seed_build_paths(
            dataset_dir, storage.join(output_root, TFRECORD_DIR), with_test=download.num_test > 0
        )
    )
    with summary.step("build_image_dataset", config.output_directory) as row:
        built = build_image_dataset(config, build.runner, build.beam_options())
        result["tfrecords"] = built
        row.figures = ", ".join(
            f"{name} {split['records']} records" for name, split in sorted(built["splits"].items())
        )
    outputs["tfrecords"] = config.output_directory
    if train is None:
        return
    from flows.check_model import check_model
    from flows.train import train_task

    train_config = train_config_of(train, output_root)
    with summary.step("train", train_config.logdir) as row:
        trained = train_task(train_config, cluster)
        result["train"] = trained
        loss = trained["metrics"].get("loss/total")
        row.figures = f"step {trained['step']}" + ("" if loss is None else f", loss {loss:.4g}")
    outputs["checkpoints"] = train_config.logdir
    if evaluate.check_model:
        with summary.step("check_model") as row:
            tested = check_model(train_config, evaluate.check_model_config(), dataset_dir)
            result["check_model"] = tested
            row.output = tested["matched_image"]
            row.figures = f"{tested['num_inliers']} inliers"
        outputs.update(
            {f"export ({kind})": path for kind, path in tested["exports"].items()},
            features=tested["features_dir"],
            matched_images=tested["matched_image"],
        )
    if evaluate.retrieval:
        if not (download.num_test and download.num_index):
            reason = "retrieval needs test and index tars: download num_test and num_index > 0"
            get_run_logger().info("perform_retrieval skipped: %s", reason)
            result["retrieval"] = {"skipped": reason}
            summary.skipped("perform_retrieval", reason)
            return
        from flows.perform_retrieval import perform_retrieval

        with summary.step("perform_retrieval") as row:
            retrieval = perform_retrieval(
                train_config, evaluate.perform_retrieval_config(), dataset_dir
            )
            result["retrieval"] = retrieval
            row.output = retrieval.get("metrics_path", "")
            maps = retrieval.get("mean_average_precision")
            # A DELF model is not evaluated: its result says why instead.
            row.figures = (
                str(retrieval["skipped"])
                if maps is None
                else ", ".join(
                    f"{name} mAP {'n/a' if value is None else f'{100 * value:.2f}'}"
                    for name, value in sorted(maps.items())
                )
            )
        if "metrics_path" in retrieval:
            outputs["metrics"] = retrieval["metrics_path"]
        if "features" in retrieval:  # a DELG model's: its features make the submission
            _make_retrieval_submission(summary, result, retrieval, dataset_dir)


def _make_retrieval_submission(
    summary: RunSummary, result: dict[str, Any], retrieval: dict[str, Any], dataset_dir: str
) -> None:
    """The challenge's submission CSV of the features retrieval extracted, and its scores."""
    from delf_core.gldv2 import layout
    from flows.retrieval_submission import make_retrieval_submission_task

    output_dir = retrieval["metrics_path"].rsplit("/", 1)[0]
    with summary.step("make_retrieval_submission") as row:
        made = make_retrieval_submission_task(
            retrieval["ground_truth"],
            retrieval["features"]["query"],
            retrieval["features"]["index"],
            storage.join(dataset_dir, layout.TEST, layout.RETRIEVAL_SOLUTION_NAME),
            output_dir,
        )
        result["retrieval_submission"] = made
        row.output = made["submission_path"]
        maps = {usage: made[usage]["mean_average_precision"] for usage in ("public", "private")}
        row.figures = ", ".join(
            f"{usage} mAP@100 {'n/a' if value is None else f'{100 * value:.2f}'}"
            for usage, value in maps.items()
        )
    result["outputs"]["retrieval_submission"] = made["submission_path"]
