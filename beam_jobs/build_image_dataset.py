"""build_image_dataset as an Apache Beam job: GLDv2 images to sharded TFRecords.

Run as `delf build_image_dataset ...` or `python -m beam_jobs.build_image_dataset ...`:
the original's flags shape the dataset, every other flag is a Beam pipeline option
(`--runner`, `--direct_num_workers`, `--project`, `--temp_location`, ...).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

import apache_beam as beam
import fsspec
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.options.pipeline_options import (
    DirectOptions,
    PipelineOptions,
    StandardOptions,
)

from delf_core.build_image_dataset import (
    BuildConfig,
    ShardPlan,
    ShardResult,
    finalize,
    plan_build,
    up_to_date_manifest,
    write_context,
    write_shard,
)
from delf_core.build_image_dataset.write import StrictModeError
from delf_core.cli_flags import add_bool_flag, add_flag, normalize_bool_values, positive_int

log = logging.getLogger(__name__)
NAMESPACE = "build_image_dataset"
# Beam 2.68+ makes DirectRunner try Prism first, which downloads a binary at run time:
# offline that fails or hangs. The FnApiRunner is the same local runner without it.
LOCAL_RUNNER = "FnApiRunner"


class WriteShardFn(beam.DoFn):
    """Writes one planned shard; counts records and problems as Beam metrics."""

    def __init__(self, output_directory: str, strict: bool) -> None:
        self.output_directory = output_directory
        self.strict = strict

    def setup(self) -> None:
        self.records = beam.metrics.Metrics.counter(NAMESPACE, "records_written")
        self.problems: dict[str, beam.metrics.metric.Metrics.DelegatingCounter] = {}

    def _count_problem(self, problem) -> None:
        if problem.problem not in self.problems:
            self.problems[problem.problem] = beam.metrics.Metrics.counter(
                NAMESPACE, problem.problem
            )
        self.problems[problem.problem].inc()

    def process(self, plan_url: str):
        with fsspec.open(plan_url, "rt") as handle:
            shard = ShardPlan.from_json(handle.read())
        result = write_shard(shard, self.output_directory, self.strict, self._count_problem)
        self.records.inc(result.records)
        yield result


def build_pipeline(
    pipeline: beam.Pipeline, plan_urls: list[str], context_url: str, config: BuildConfig
) -> beam.PCollection:
    """Shard plans -> shards written in parallel -> report, relabeling and manifest."""

    def finish(results: list[ShardResult]) -> dict:
        return finalize(context_url, results, config.output_directory)

    return (
        pipeline
        | "ShardPlans" >> beam.Create(plan_urls)
        # Breaks fusion so the shards spread over all workers.
        | "Spread" >> beam.Reshuffle()
        | "WriteShards" >> beam.ParDo(WriteShardFn(config.output_directory, config.strict))
        | "Collect" >> beam.combiners.ToList()
        | "Finalize" >> beam.Map(finish)
    )


def job_counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The job's counters (records written, images per problem), by name."""
    query = result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    return {counter.key.metric.name: counter.committed for counter in query["counters"]}


def pipeline_options(pipeline_args: list[str]) -> PipelineOptions:
    """Beam options from the leftover flags.

    A local run uses the offline-safe runner with one thread per core, unless told
    otherwise: JPEG decoding and file I/O release the GIL, and threads spare each
    worker process a TensorFlow import (seconds) and start-up.
    """
    options = PipelineOptions(pipeline_args)
    standard = options.view_as(StandardOptions)
    if standard.runner in (None, "DirectRunner", "direct"):
        standard.runner = LOCAL_RUNNER
    if standard.runner == LOCAL_RUNNER:
        direct = options.view_as(DirectOptions)
        given = {arg.split("=", 1)[0] for arg in pipeline_args}
        if "--direct_running_mode" not in given:
            direct.direct_running_mode = "multi_threading"
        if "--direct_num_workers" not in given:
            direct.direct_num_workers = os.cpu_count() or 1
    return options


def run_build(config: BuildConfig, pipeline_args: list[str] | None = None) -> dict:
    """Plans, skips when an identical build exists, else runs the job; returns the manifest.

    Raises:
      ValueError: for a bad flag or CSV.
      StrictModeError: with `strict`, naming the first missing or unreadable image.
    """
    plan = plan_build(config)
    if config.strict and plan.problems:
        first = plan.problems[0]
        where = first.path or first.image_id
        raise StrictModeError(f"{where}: {first.problem} ({first.detail}) (--strict)")
    manifest = up_to_date_manifest(config, plan.fingerprint)
    if manifest is not None:
        log.info("build_image_dataset: up to date in %s, nothing to do", config.output_directory)
        return manifest
    plan_urls = plan.write()
    context_url = write_context(plan)
    pipeline = beam.Pipeline(options=pipeline_options(pipeline_args or []))
    build_pipeline(pipeline, plan_urls, context_url, config)
    result = pipeline.run()
    result.wait_until_finish()
    log.info("build_image_dataset: job counters %s", job_counters(result))
    manifest = up_to_date_manifest(config, plan.fingerprint)
    assert manifest is not None, "the job finished without writing its manifest"
    return manifest


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(
        parser,
        "train_directory",
        "/tmp/",
        "folder of train images (*.jpg); may hold wildcards, e.g. gldv2_dataset/train/*/*/*/",
    )
    add_flag(parser, "test_directory", None, "folder of test images; may hold wildcards")
    add_flag(parser, "output_directory", "/tmp/", "where the shards and relabeling.csv go")
    add_flag(
        parser,
        "train_csv_path",
        "/tmp/train.csv",
        "train.csv (id,url,landmark_id); used when there is no clean CSV",
    )
    add_flag(
        parser,
        "train_clean_csv_path",
        None,
        "train_clean.csv (landmark_id,images): keep only these images, relabeled 0..K-1",
    )
    add_flag(
        parser,
        "test_csv_path",
        None,
        "when set, test shards are built from --test_directory (the file is not read)",
    )
    add_flag(parser, "num_shards", 128, "shards per split", type=positive_int)
    add_bool_flag(
        parser,
        "generate_train_validation_splits",
        False,
        "split train per class into train and validation",
    )
    add_flag(
        parser,
        "validation_split_size",
        0.2,
        "fraction of each class for validation (at least one image)",
        type=float,
    )
    add_flag(parser, "seed", 0, "seed of the split and of the record order", type=int)
    add_bool_flag(
        parser,
        "strict",
        False,
        "fail on the first missing or unreadable image instead of reporting it",
    )


def config_from_args(args: argparse.Namespace) -> BuildConfig:
    return BuildConfig(
        train_directory=args.train_directory,
        test_directory=args.test_directory,
        output_directory=args.output_directory,
        train_csv_path=args.train_csv_path,
        train_clean_csv_path=args.train_clean_csv_path,
        test_csv_path=args.test_csv_path,
        num_shards=args.num_shards,
        generate_train_validation_splits=args.generate_train_validation_splits,
        validation_split_size=args.validation_split_size,
        seed=args.seed,
        strict=args.strict,
    )


def run(args: argparse.Namespace) -> int:
    """Runs the build from parsed flags; `args.pipeline_args` holds the Beam options."""
    try:
        manifest = run_build(config_from_args(args), getattr(args, "pipeline_args", []))
    except (ValueError, StrictModeError, FileNotFoundError) as error:
        print(f"build_image_dataset: error: {error}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    counts = ", ".join(
        f"{name} {split['records']} records in {len(split['shards'])} shards"
        for name, split in manifest["splits"].items()
    )
    problems = ", ".join(f"{count} {kind}" for kind, count in manifest["problems"].items())
    print(
        f"build_image_dataset: {counts}; problems: {problems or 'none'} (see {manifest['report']})"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m beam_jobs.build_image_dataset",
        description="GLDv2 images to sharded TFRecords; other flags are Beam options.",
    )
    add_arguments(parser)
    args, pipeline_args = parser.parse_known_args(
        normalize_bool_values(parser, sys.argv[1:] if argv is None else argv)
    )
    args.pipeline_args = pipeline_args
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
