"""The GLDv2 pipeline flow: download, build the TFRecords, train, test and evaluate the model."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow

from delf_core import storage
from delf_core.gldv2 import layout
from delf_core.training.config import TrainConfig
from flows.build_image_dataset import build_image_dataset_flow, seed_build_config
from flows.check_model import ModelCheck, check_trained_model
from flows.download import download_gldv2
from flows.perform_retrieval import RetrievalCheck, evaluate_retrieval
from flows.train import train_task


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
    train: TrainConfig | None = None,
    test_model: ModelCheck | None = None,
    retrieval: RetrievalCheck | None = None,
) -> dict[str, Any]:
    """Downloads GLDv2, builds the TFRecords of the seed README and trains on them.

    Test shards are built when test tars are downloaded. `train` holds the training
    flags (its file patterns are set to the built shards); None skips training.
    `test_model`, after training, exports the model (local for DELF, local_and_global
    for DELG, plus `test_model.exports`), extracts two images of one landmark and
    matches them, as the seed README's "test the trained model"; None skips it.
    `retrieval`, after that, evaluates a DELG model as the DELG instructions do: the
    downloaded test queries against the index, mAP in metrics.txt (under
    `result["retrieval"]`); a DELF model is skipped with a log line; None skips it.

    A rerun skips every finished tar, an identical TFRecord build, a finished
    training run and current exports, features, picture and metrics; a crashed
    training resumes from its last checkpoint.
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
    result = {"download": download, "tfrecords": tfrecords}
    if train is not None:
        train = dataclasses.replace(
            train,
            train_file_pattern=storage.join(config.output_directory, "train*"),
            validation_file_pattern=storage.join(config.output_directory, "validation*"),
        )
        result["train"] = train_task(train)
        if test_model is not None:
            result["test_model"] = check_trained_model(train, test_model, dataset_dir)
        if retrieval is not None:
            result["retrieval"] = evaluate_retrieval(train, retrieval, dataset_dir)
    return result
