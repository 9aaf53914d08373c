"""The `build_image_dataset` step as a Prefect task and flow, cached on the input fingerprint."""

from __future__ import annotations

import csv
import io
import itertools
import time
from typing import Any

from prefect import flow, get_run_logger, task

from beam_jobs.options import LOCAL_RUNNER, check_runner
from delf_core import storage
from delf_core.build_image_dataset import BuildConfig, build_fingerprint, up_to_date_manifest
from delf_core.progress import format_bytes
from flows.caching import OutputsStandCache
from flows.progress import step_progress
from flows.run_summary import COUNTED
from flows.summary import MAX_LISTED, capped, publish_summary, size_on_disk


def _build_identity(inputs: dict[str, Any]) -> str:
    # The fingerprint covers the parameters, the CSV and every image's id and size.
    return f"{inputs['fingerprint']}|{inputs['config'].output_directory}"


def _build_stands(inputs: dict[str, Any]) -> bool:
    return up_to_date_manifest(inputs["config"], inputs["fingerprint"]) is not None


@task(
    name="fingerprint_inputs",
    tags=["build_image_dataset"],
    task_run_name="fingerprint_inputs",
    retries=1,
    retry_delay_seconds=10,
)
def fingerprint_inputs(config: BuildConfig) -> str:
    """What the build's output depends on, from a listing of the images and the CSV."""
    return build_fingerprint(config)


@task(
    name="build_image_dataset",
    tags=["build_image_dataset"],
    **COUNTED,
    task_run_name="build_image_dataset",
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
    from beam_jobs.build_image_dataset import run_build  # Beam: only on a build

    started = time.monotonic()
    manifest = run_build(
        config, pipeline_options, on_progress=step_progress("build_image_dataset", "images")
    )
    rows = [
        {"split": name, "records": split["records"], "shards": len(split["shards"])}
        for name, split in sorted(manifest["splits"].items())
    ]
    rows += [
        {"split": f"problem: {kind}", "records": count, "shards": ""}
        for kind, count in manifest["problems"].items()
    ]
    _publish_summary(config, manifest, rows, started)
    return manifest


def problem_lines(report_url: str, limit: int = MAX_LISTED) -> list[str]:
    """The first `limit` rows of the problem report, one markdown line each."""
    fs, path = storage.resolve(report_url)
    try:
        with fs.open(path, "rb") as handle:
            rows = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
            return [
                f"{row['problem']}: `{row['image_id']}` ({row['split']}) {row['detail']}".rstrip()
                for row in itertools.islice(rows, limit)
            ]
    except FileNotFoundError:
        return []


def _publish_summary(config: BuildConfig, manifest: dict, rows: list[dict], started: float) -> None:
    facts: dict[str, object] = {
        f"{name} records": f"{split['records']} in {len(split['shards'])} shards"
        for name, split in sorted(manifest["splits"].items())
    }
    written = size_on_disk(config.output_directory)
    if written is not None:
        facts["size on disk"] = format_bytes(written)
    report = storage.join(config.output_directory, manifest["report"])
    facts.update({f"problem: {kind}": count for kind, count in manifest["problems"].items()})
    facts["problem report"] = f"`{report}`"
    facts["output"] = f"`{config.output_directory}`"
    if "built_at" in manifest:  # earlier than this run: an identical build was kept
        facts["built at"] = manifest["built_at"]
    total = sum(manifest["problems"].values())
    # Missing and unreadable images are left out, re-encoded ones kept: the report says which.
    notes = capped(problem_lines(report), total) if total else ["no missing or unreadable image"]
    publish_summary("build_image_dataset", facts, started=started, notes=notes, table=rows)


@flow(name="build_image_dataset")
def build_image_dataset(
    config: BuildConfig, runner: str = LOCAL_RUNNER, pipeline_options: list[str] | None = None
) -> dict:
    """Builds the TFRecords on the Beam runner `runner` (FnApiRunner, DaskRunner, DataflowRunner).

    Raises:
        ValueError: an unknown runner, in one line.
    """
    options = [f"--runner={check_runner(runner)}", *(pipeline_options or [])]
    fingerprint = fingerprint_inputs(config)
    manifest = build_image_dataset_task(config, fingerprint, options)
    get_run_logger().info(
        "tfrecords in %s: %s",
        config.output_directory,
        {name: split["records"] for name, split in manifest["splits"].items()},
    )
    return manifest


def seed_build_paths(dataset_dir: str, output_directory: str, with_test: bool) -> dict[str, str]:
    """The seed README's build of a download in `dataset_dir`: the clean subset's images
    and CSVs, and the test images when there are any."""
    paths = dict(
        train_csv_path=f"{dataset_dir}/train/train.csv",
        train_clean_csv_path=f"{dataset_dir}/train/train_clean.csv",
        train_directory=f"{dataset_dir}/train/*/*/*/",
        output_directory=output_directory,
    )
    if with_test:
        paths.update(
            test_csv_path=f"{dataset_dir}/test/test.csv",
            test_directory=f"{dataset_dir}/test/*/*/*/",
        )
    return paths
