"""The `build_image_dataset` step as a Prefect task and flow, cached on the input fingerprint."""

from __future__ import annotations

import dataclasses
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact

from beam_jobs.build_image_dataset import run_build
from delf_core.build_image_dataset import BuildConfig, plan_build, up_to_date_manifest
from flows.caching import OutputsStandCache


def _build_identity(inputs: dict[str, Any]) -> str:
    # The fingerprint covers the parameters, the CSV and every image's id and size.
    return f"{inputs['fingerprint']}|{inputs['config'].output_directory}"


def _build_stands(inputs: dict[str, Any]) -> bool:
    return up_to_date_manifest(inputs["config"], inputs["fingerprint"]) is not None


@task(name="fingerprint_inputs", retries=1, retry_delay_seconds=10)
def fingerprint_inputs(config: BuildConfig) -> str:
    """What the build's output depends on, from a listing of the images and the CSV."""
    return plan_build(config).fingerprint


@task(
    name="build_image_dataset",
    cache_policy=OutputsStandCache(
        identity=_build_identity, outputs_stand=_build_stands, prefix="build_image_dataset"
    ),
    retries=1,
    retry_delay_seconds=30,
)
def build_image_dataset_task(
    config: BuildConfig, fingerprint: str, pipeline_options: list[str]
) -> dict:
    """Runs the Beam job (which skips an identical build); returns its manifest."""
    manifest = run_build(config, pipeline_options)
    rows = [
        {"split": name, "records": split["records"], "shards": len(split["shards"])}
        for name, split in sorted(manifest["splits"].items())
    ]
    rows += [
        {"split": f"problem: {kind}", "records": count, "shards": ""}
        for kind, count in manifest["problems"].items()
    ]
    create_table_artifact(rows, key="gldv2-tfrecords", description="records written per split")
    return manifest


@flow(name="build_image_dataset")
def build_image_dataset_flow(
    config: BuildConfig, runner: str = "FnApiRunner", pipeline_options: list[str] | None = None
) -> dict:
    """Builds the TFRecords on the Beam runner `runner` (FnApiRunner, DataflowRunner, ...)."""
    options = [f"--runner={runner}", *(pipeline_options or [])]
    fingerprint = fingerprint_inputs(config)
    manifest = build_image_dataset_task(config, fingerprint, options)
    get_run_logger().info(
        "tfrecords in %s: %s",
        config.output_directory,
        {name: split["records"] for name, split in manifest["splits"].items()},
    )
    return manifest


def seed_build_config(
    dataset_dir: str, output_directory: str, with_test: bool, **overrides
) -> BuildConfig:
    """The seed README's build: clean subset, per-class validation split, test shards."""
    values = dict(
        train_csv_path=f"{dataset_dir}/train/train.csv",
        train_clean_csv_path=f"{dataset_dir}/train/train_clean.csv",
        train_directory=f"{dataset_dir}/train/*/*/*/",
        output_directory=output_directory,
        generate_train_validation_splits=True,
        validation_split_size=0.2,
    )
    if with_test:
        values.update(
            test_csv_path=f"{dataset_dir}/test/test.csv",
            test_directory=f"{dataset_dir}/test/*/*/*/",
        )
    return dataclasses.replace(BuildConfig(**values), **overrides)
