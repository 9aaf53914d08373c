"""build_image_dataset as an Apache Beam job: GLDv2 images to sharded TFRecords.

`run_build(config, pipeline_args)` runs it; `delf build_image_dataset` gives it the
original's flags as the config and every other flag as a Beam pipeline option
(`--runner`, `--direct_num_workers`, `--project`, `--temp_location`, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator

import apache_beam as beam
import fsspec
from apache_beam.options.pipeline_options import PipelineOptions

from beam_jobs import runner
from beam_jobs.options import pipeline_options
from delf_core.build_image_dataset import (
    BuildConfig,
    ShardPlan,
    ShardResult,
    build_fingerprint,
    finalize,
    plan_build,
    up_to_date_manifest,
    write_context,
    write_shard,
)
from delf_core.build_image_dataset.folder import first_stop, prepare_output, record_stop
from delf_core.build_image_dataset.plan import BuildPlan
from delf_core.build_image_dataset.progress import ShardProgress, images_done
from delf_core.build_image_dataset.write import StrictModeError, strict_error

log = logging.getLogger(__name__)
NAMESPACE = "build_image_dataset"
# How often a shard writer records its count, and the launcher reads them: often enough
# for a bar, rarely enough that polling a gs:// work folder stays cheap.
PROGRESS_SECONDS = 5.0
# (images done, images planned), as the job goes.
BuildProgressCallback = Callable[[int, int], None]


class BuildJobError(RuntimeError):
    """The Beam job failed for a reason other than --strict; one line, the log has the rest."""


class WriteShardFn(beam.DoFn):
    """Writes one planned shard; counts records and problems as Beam metrics.

    Under --strict, the first problem stops its shard and is recorded in the work
    folder rather than raised: runners retry a failing bundle (Dataflow four times),
    which cannot help, and would bury the one line the user needs in tracebacks.
    Shards not yet started then skip their work.
    """

    def __init__(
        self,
        output_directory: str,
        strict: bool,
        work_folder: str,
        max_image_pixels: int,
        progress_seconds: float = PROGRESS_SECONDS,
    ) -> None:
        self.output_directory = output_directory
        self.strict = strict
        self.work_folder = work_folder
        self.max_image_pixels = max_image_pixels
        self.progress_seconds = progress_seconds

    def setup(self) -> None:
        self.records = beam.metrics.Metrics.counter(NAMESPACE, "records_written")
        self.problems: dict[str, beam.metrics.metric.Metrics.DelegatingCounter] = {}

    def _count_problem(self, problem) -> None:
        if problem.problem not in self.problems:
            self.problems[problem.problem] = beam.metrics.Metrics.counter(
                NAMESPACE, problem.problem
            )
        self.problems[problem.problem].inc()

    def process(self, plan_url: str) -> list[ShardResult]:
        if self.strict and first_stop(self.work_folder) is not None:
            return []  # another shard stopped the build
        with fsspec.open(plan_url, "rt") as handle:
            shard = ShardPlan.from_json(handle.read())
        progress = ShardProgress(self.work_folder, shard.name, self.progress_seconds)
        try:
            result = write_shard(
                shard,
                self.output_directory,
                self.strict,
                self._count_problem,
                self.max_image_pixels,
                on_image=progress.image_done,
            )
        except StrictModeError as error:
            record_stop(self.work_folder, shard.name, str(error))
            return []
        progress.flush()
        self.records.inc(result.records)
        return [result]


def build_pipeline(
    pipeline: beam.Pipeline,
    plan_urls: list[str],
    context_url: str,
    config: BuildConfig,
    progress_seconds: float = PROGRESS_SECONDS,
) -> beam.PCollection:
    """Shard plans -> shards written in parallel -> report, relabeling and manifest.

    A build stopped under --strict writes no manifest: its shards are not a dataset.
    """
    work_folder = context_url.rsplit("/", 1)[0]  # the context lives in the work folder

    def finish(results: list[ShardResult]) -> dict | None:
        if config.strict and first_stop(work_folder) is not None:
            return None
        return finalize(context_url, results, config.output_directory)

    write = WriteShardFn(
        config.output_directory,
        config.strict,
        work_folder,
        config.max_image_pixels,
        progress_seconds,
    )
    return (
        pipeline
        | "ShardPlans" >> beam.Create(plan_urls)
        # Breaks fusion so the shards spread over all workers.
        | "Spread" >> beam.Reshuffle()
        | "WriteShards" >> beam.ParDo(write)
        # Without defaults: with them, Beam gives the list to the next step as a side
        # input, which Beam's DaskRunner computes again inside that step's one task.
        | "Collect" >> beam.combiners.ToList().without_defaults()
        | "Finalize" >> beam.Map(finish)
    )


def job_counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The job's counters (records written, images per problem), by name; {} on Dask."""
    return runner.job_counters(result, NAMESPACE)


def run_build(
    config: BuildConfig,
    pipeline_args: list[str] | None = None,
    on_progress: BuildProgressCallback | None = None,
    progress_seconds: float = PROGRESS_SECONDS,
) -> dict:
    """Plans, skips when an identical build exists, else runs the job; returns the manifest.

    While the job runs, `on_progress(images done, images planned)` is called about every
    `progress_seconds` from a thread of its own (in the caller's context), with what
    the shard writers have recorded in the work folder (see `images_done`).

    Before the job writes anything, the output folder is made ready (prepare_output):
    the old manifest goes first, so a build killed midway leaves no manifest at all.

    Raises:
      ValueError: for a bad flag or CSV, or a split with no image.
      StrictModeError: with `strict`, naming the first missing or unreadable image,
        whether planning or the job found it.
      BuildJobError: when the job fails otherwise, with the last line of its error.
      DaskClusterError: the DaskRunner's --dask_client_address did not answer.
    """
    # A rerun's check needs the listing's fingerprint only, not a plan of 1.58M images.
    manifest = up_to_date_manifest(config, build_fingerprint(config))
    if manifest is not None:
        log.info("build_image_dataset: up to date in %s, nothing to do", config.output_directory)
        if on_progress is not None:
            planned = sum(split.get("planned", 0) for split in manifest["splits"].values())
            on_progress(planned, planned)
        return manifest
    plan = plan_build(config)
    if config.strict and plan.problems:
        raise strict_error(plan.problems[0])
    planned = sum(len(shard.images) for shard in plan.shards)
    options = pipeline_options(pipeline_args or [])
    # A cluster that does not answer fails the build before any output is removed.
    with runner.dask_cluster(options):
        return _run_job(config, plan, options, planned, on_progress, progress_seconds)


def _run_job(
    config: BuildConfig,
    plan: BuildPlan,
    options: PipelineOptions,
    planned: int,
    on_progress: BuildProgressCallback | None,
    progress_seconds: float,
) -> dict:
    """Clears the output, runs the job over the plan, and returns the manifest."""
    removed = prepare_output(config.output_directory, [shard.name for shard in plan.shards])
    if removed:
        log.info(
            "build_image_dataset: removed %d files of earlier builds (%s)",
            len(removed),
            ", ".join(removed[:4]) + (", ..." if len(removed) > 4 else ""),
        )
    plan_urls = plan.write()
    context_url = write_context(plan)
    pipeline = beam.Pipeline(options=options)
    build_pipeline(pipeline, plan_urls, context_url, config, progress_seconds)
    try:
        with _watching(plan.work_folder(), planned, on_progress, progress_seconds):
            result = runner.run_and_wait(pipeline)
        stopped = first_stop(plan.work_folder())
    except Exception as error:
        _discard_partial(config.output_directory)
        raise BuildJobError(
            f"the Beam job failed: {_last_line(error)} (the log has the traceback)"
        ) from error
    if stopped is not None:
        _discard_partial(config.output_directory)
        raise StrictModeError(stopped)
    if on_progress is not None:  # every planned image was written or left out
        on_progress(planned, planned)
    log.info("build_image_dataset: job counters %s", job_counters(result))
    manifest = up_to_date_manifest(config, plan.fingerprint)
    if manifest is None:
        raise BuildJobError(f"the job finished but {config.output_directory} has no manifest")
    return manifest


@contextlib.contextmanager
def _watching(
    work_folder: str,
    planned: int,
    on_progress: BuildProgressCallback | None,
    every_seconds: float,
) -> Iterator[None]:
    """Calls `on_progress` from a thread, every `every_seconds`, while the job runs."""
    if on_progress is None:
        yield
        return
    on_progress(0, planned)
    stop = threading.Event()

    def poll() -> None:
        # The highest count read: a retried shard starts its count over, and the job's
        # last step removes the work folder; neither is progress lost.
        shown = 0
        while not stop.wait(every_seconds):
            try:
                shown = max(shown, images_done(work_folder))
                on_progress(shown, planned)
            except Exception:  # progress is for show: the job goes on without it
                log.warning("build_image_dataset: could not read the progress", exc_info=True)

    # A copy of the caller's context: its logging and run context hold in the thread.
    thread = threading.Thread(
        target=contextvars.copy_context().run, args=(poll,), name="build-progress", daemon=True
    )
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _discard_partial(output_directory: str) -> None:
    """Removes a failed build's shards and state: without a manifest they are no dataset."""
    try:
        prepare_output(output_directory, [])
    except OSError as error:  # the next build clears what is left
        log.warning("build_image_dataset: could not clean %s: %s", output_directory, error)


def _last_line(error: BaseException) -> str:
    """The last line of a runner's error: the original exception, after its traceback."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else type(error).__name__
    return last if len(last) <= 500 else f"{last[:497]}..."
