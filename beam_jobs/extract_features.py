"""extract_features as an Apache Beam job: the same feature files, over millions of images.

`run_extract(job, pipeline_args)` runs it; `delf extract_features --beam` gives it the
job of its flags (list form or DELG form, or `--images_glob`) and every other flag as a
Beam pipeline option (`--runner`, `--direct_num_workers`, `--project`, ...).

The launcher reads the config and the images, lists the output folder once and plans
only the images with a missing output file, so a rerun finishes an interrupted job and
redoes nothing. Workers load the model once per process and write each image's files
whole (delf_core.storage). Unreadable images are counted and listed in
extract_features_report.csv; extract_features_manifest.json is written last. The exit
status is 1 when any image failed, unless --allow_failures.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Iterable

import apache_beam as beam
import tensorflow as tf
from apache_beam.options.pipeline_options import StandardOptions
from apache_beam.utils import shared
from google.protobuf import text_format

from beam_jobs import runner as runners
from beam_jobs.options import LOCAL_DISK_RUNNERS, pipeline_options, runner_name
from delf_core import storage
from delf_core.export.current import export_files
from delf_core.features import parse_delf_config
from delf_core.features.extract import ImageItem, extract_item
from delf_core.features.extract_job import (
    MANIFEST_NAME,
    ExtractJobConfig,
    ExtractPlan,
    finish,
    plan_extraction,
    read_manifest,
    warn_if_made_otherwise,
)
from delf_core.features.record import features_source, record_entry, record_store
from delf_core.features.record_store import shard_of

log = logging.getLogger(__name__)
NAMESPACE = "extract_features"
FAILED = "failed"
PLAN_FOLDER = ".extract_features_plan"
# The plan is cut into files of at most this many images, and at least MIN_PLAN_FILES
# when there are that many images: runners that cannot spread the images of one file
# (Beam's DaskRunner ignores Reshuffle) give each file to a worker, a few minutes' work.
PLAN_FILE_IMAGES = 500
MIN_PLAN_FILES = 64
# Per-image failures the job counts and reports instead of failing (DESIGN rule 6):
# unreadable or corrupt images, storage errors, and TensorFlow refusing an odd image.
IMAGE_ERRORS = (OSError, ValueError, tf.errors.OpError)
PROGRESS_EVERY = 1000
# About the JSON size of one image's record, to size the record shards of a new folder.
_RECORD_BYTES = 200


def _encode(item: ImageItem) -> str:
    return json.dumps([item.name, item.path, item.bbox])


def _decode(line: str) -> ImageItem:
    name, path, bbox = json.loads(line)
    return ImageItem(name, path, None if bbox is None else tuple(bbox))


# Models this process has loaded: one per worker process is the design (see ExtractFn).
_models_loaded = 0


def models_loaded() -> int:
    """How many models this process has loaded for the job, e.g. on a Dask worker."""
    return _models_loaded


def _read_plan(url: str):
    fs, path = storage.resolve(url)
    with fs.open(path, "rt") as handle:
        yield from (line for line in handle if line.strip())


class ExtractFn(beam.DoFn):
    """Extracts one image per element; emits (status, name, detail).

    The detail is the record of an extracted image (which model and config made its
    files, for the folder's sharded records), the reason of a FAILED one, or None.
    One output, tagged in its value rather than by Beam: Beam's DaskRunner passes
    every tagged output of a ParDo to each consumer of any one of them.

    One Extractor serves every thread of a worker process through `shared.Shared`:
    after construction it is read-only (constant tensors, PCA arrays, the SavedModel's
    concrete function), and TensorFlow runs one concrete function from several Python
    threads at once safely (as Beam's RunInference shares models). So N threads cost
    one model in memory and one load, not N, and TF's own op threads do the parallel
    arithmetic.
    """

    def __init__(
        self, config_text: str, output_dir: str, delg_form: bool, handle, source: str
    ) -> None:
        self.config_text = config_text
        self.output_dir = output_dir
        self.delg_form = delg_form
        self.handle = handle
        self.source = source

    def setup(self) -> None:
        from delf_core.features.extractor import Extractor

        def load() -> Extractor:
            global _models_loaded
            log.info("extract_features: loading the model on this worker process")
            _models_loaded += 1
            return Extractor(parse_delf_config(self.config_text))

        # Tagged by the config, so a different config in the same process reloads.
        self.extractor = self.handle.acquire(load, tag=self.config_text)
        self.counters = {
            name: beam.metrics.Metrics.counter(NAMESPACE, name)
            for name in ("extracted", "skipped", "failed")
        }
        self.done = 0
        self.start = time.monotonic()

    def process(self, line: str):
        item = _decode(line)
        try:
            status = (
                "extracted"
                if extract_item(self.extractor, item, self.output_dir, self.delg_form)
                else "skipped"
            )
        except IMAGE_ERRORS as error:
            log.warning("extract_features: skipping %s: %s", item.path, error)
            self.counters[FAILED].inc()
            yield FAILED, item.name, f"{type(error).__name__}: {error}"
            return
        self.counters[status].inc()
        self.done += 1
        if self.done % PROGRESS_EVERY == 0:
            rate = self.done / max(time.monotonic() - self.start, 1e-9)
            log.info("extract_features: %d images by this thread, %.2f/s", self.done, rate)
        # Files found made already keep their (or no) record.
        detail = record_entry(item, self.source) if status == "extracted" else None
        yield status, item.name, detail


class TallyFn(beam.CombineFn):
    """Adds the shards' tallies: ({status: count}, [(name, reason)], {shard: sha256})."""

    def create_accumulator(self) -> tuple[dict[str, int], list, dict]:
        return {}, [], {}

    def add_input(self, accumulator, tally):
        return self.merge_accumulators([accumulator, tally])

    def merge_accumulators(self, accumulators):
        counts, failures, digests = {}, [], {}
        for part_counts, part_failures, part_digests in accumulators:
            for status, count in part_counts.items():
                counts[status] = counts.get(status, 0) + count
            failures.extend(part_failures)
            digests.update(part_digests)
        return counts, failures, digests

    def extract_output(self, accumulator):
        return accumulator


class _ShardKey:
    """(record shard, outcome): each shard's outcomes meet on one worker."""

    def __init__(self, num_shards: int) -> None:
        self.num_shards = num_shards

    def __call__(self, outcome: tuple[str, str, object]) -> tuple[int, tuple]:
        return shard_of(outcome[1], self.num_shards), outcome


class _WriteShard:
    """Merges one shard's new records into its file; returns the shard's tally.

    The tally is ({status: count}, [(name, reason)], {shard: sha256 of its new file}),
    the last empty when no image of the shard was extracted.
    """

    def __init__(self, output_dir: str, index: dict) -> None:
        self.output_dir = output_dir
        self.index = index

    def __call__(self, grouped: tuple[int, Iterable]) -> tuple[dict, list, dict]:
        shard, outcomes = grouped
        counts, failures, records = {}, [], {}
        for status, name, detail in outcomes:
            counts[status] = counts.get(status, 0) + 1
            if status == FAILED:
                failures.append((name, detail))
            elif detail is not None:
                records[name] = detail
        counts.pop(FAILED, None)
        if not records:
            return counts, failures, {}
        digest = record_store(self.output_dir).merge_shard(self.index, shard, records)
        return counts, failures, {shard: digest}


class _Finish:
    """The last step: the records' index, the report and the manifest, from all workers."""

    def __init__(
        self, job: ExtractJobConfig, config_text: str, plan: ExtractPlan, runner: str, index: dict
    ):
        self.job = job
        self.config_text = config_text
        self.done = plan.done
        self.duplicates = list(plan.duplicates)
        self.runner = runner
        self.index = index

    def __call__(self, tally: tuple[dict[str, int], list[tuple[str, str]], dict]) -> dict:
        counts, failures, digests = dict(tally[0]), tally[1], tally[2]
        record_store(self.job.output_dir).commit(self.index, digests)
        counts["skipped"] = counts.get("skipped", 0) + self.done
        failed = self.duplicates + [tuple(f) for f in failures]
        return finish(self.job, parse_delf_config(self.config_text), counts, failed, self.runner)


def build_pipeline(
    pipeline: beam.Pipeline,
    plan_urls: list[str],
    job: ExtractJobConfig,
    config_text: str,
    plan: ExtractPlan,
    runner: str,
    source: str,
    index: dict,
) -> beam.PCollection:
    """Planned images -> extracted in parallel -> record shards -> report and manifest.

    One chain, no side input and no tagged output: so it runs the same on Beam's
    DaskRunner, which computes only a pipeline's last step and what feeds it, and
    computes a side input again inside the task that reads it.

    Args:
        source: `features_source` of the model and config: what each record says.
        index: The folder's record index (`RecordStore.prepare`), shards keyed by it.
    """
    return (
        pipeline
        # The plan is files, not beam.Create(items): a 761k-image plan would swell the
        # job graph, which Dataflow caps in size. Read with fsspec, as every other file
        # of the job, so one set of credentials (and the GCS emulator in tests) serves.
        | "Plan" >> beam.Create(plan_urls)
        | "Items" >> beam.FlatMap(_read_plan)
        # Breaks fusion so the images spread over all workers and threads.
        | "Spread" >> beam.Reshuffle()
        | "Extract"
        >> beam.ParDo(
            ExtractFn(config_text, job.output_dir, job.delg_form, shared.Shared(), source)
        )
        # Each image's outcome goes to its record shard, so one worker writes each shard.
        | "ShardKey" >> beam.Map(_ShardKey(index["shards"]))
        | "ByShard" >> beam.GroupByKey()
        | "WriteShards" >> beam.Map(_WriteShard(job.output_dir, index))
        # Planning returned early when nothing was left: there is always an outcome.
        | "Tally" >> beam.CombineGlobally(TallyFn()).without_defaults()
        | "Finish" >> beam.Map(_Finish(job, config_text, plan, runner, index))
    )


def job_counters(result: beam.runners.runner.PipelineResult) -> dict[str, int]:
    """The job's counters (extracted, skipped, failed), by name; {} on Dask."""
    return runners.job_counters(result, NAMESPACE)


def _check_paths(job: ExtractJobConfig, config, items: list[ImageItem], runner: str) -> None:
    """Fails fast, in one line, on a model or folder the workers could not read.

    Raises:
        ValueError: no SavedModel at model_path, or a local path with a remote runner.
    """
    model = storage.join(config.model_path, "saved_model.pb")
    fs, path = storage.resolve(model)
    if not fs.exists(path):
        raise ValueError(f"model_path {config.model_path!r} of {job.config_path}: no {model}")
    if runner_name(runner) in LOCAL_DISK_RUNNERS:  # a remote Dask cluster needs URLs too
        return
    named = {"the output folder": job.output_dir, "model_path": config.model_path}
    for local in (config.delf_local_config, config.delf_global_config):
        if local.use_pca:
            named["pca mean_path"] = local.pca_parameters.mean_path
    if items:
        named["the image"] = items[0].path
    for what, url in named.items():
        if url and storage.is_local(storage.resolve(url)[0]):
            raise ValueError(
                f"{what} {url!r} is a local path, which {runner} workers cannot read: "
                "copy it to gs:// and give that URL"
            )


def _write_plan(job: ExtractJobConfig, items: list[ImageItem]) -> tuple[list[str], str]:
    """Writes the planned items, one JSON a line, in files of at most PLAN_FILE_IMAGES.

    Returns:
        The files' URLs for Beam, and fsspec's path of the folder that holds them.
    """
    fs, root = storage.resolve(job.output_dir)
    folder = storage.join(root, PLAN_FOLDER, uuid.uuid4().hex)
    files = max(-(-len(items) // PLAN_FILE_IMAGES), min(len(items), MIN_PLAN_FILES))
    urls = []
    for index in range(files):
        part = items[index::files]  # interleaved: each file gets a fair mix of the images
        path = storage.join(folder, f"{index:05d}.jsonl")
        storage.write_bytes(fs, path, "".join(_encode(item) + "\n" for item in part).encode())
        urls.append(storage.url_of(fs, path))
    return urls, folder


def _remove_plan(job: ExtractJobConfig, folder: str) -> None:
    fs, _ = storage.resolve(job.output_dir)
    try:
        fs.rm(folder, recursive=True)
        parent = folder.rsplit("/", 1)[0]
        if storage.is_local(fs) and not fs.ls(parent):
            fs.rmdir(parent)
    except OSError as error:
        log.warning("extract_features: could not remove the plan %s: %s", folder, error)


def run_extract(job: ExtractJobConfig, pipeline_args: list[str] | None = None) -> dict:
    """Plans what is left, runs the job over it, and returns the manifest.

    Args:
        job: What to extract (`ExtractFeaturesConfig.job()` of the flags).
        pipeline_args: Beam options; none gives the local runner with a thread per core.

    Returns:
        The manifest written into the output folder (counts under "counts").

    Raises:
        ValueError: a bad config, input or path, in one line.
        OSError: a missing config, list or dataset file.
        DaskClusterError: the DaskRunner's --dask_client_address did not answer.
    """
    config, items = job.load()
    options = pipeline_options(pipeline_args or [])
    runner = str(runner_name(options.view_as(StandardOptions).runner))
    _check_paths(job, config, items, runner)
    warn_if_made_otherwise(job, config)
    plan = plan_extraction(items, job.output_dir, job.delg_form, config)
    log.info(
        "extract_features: %d of %d images to extract (%d already done) into %s",
        len(plan.todo), plan.total, plan.done, job.output_dir,
    )  # fmt: skip
    config_text = text_format.MessageToString(config)
    if not plan.todo:
        counts = {"extracted": 0, "skipped": plan.done}
        return finish(job, config, counts, list(plan.duplicates), runner)
    source = features_source(export_files(config.model_path), config, job.delg_form)
    # Made here, before any worker writes a shard: the workers share its shard count.
    index = record_store(job.output_dir).prepare(expected_bytes=_RECORD_BYTES * len(plan.todo))
    # A cluster that does not answer fails before the plan is written.
    with runners.dask_cluster(options):
        plan_urls, plan_folder = _write_plan(job, plan.todo)
        try:
            pipeline = beam.Pipeline(options=options)
            build_pipeline(pipeline, plan_urls, job, config_text, plan, runner, source, index)
            result = runners.run_and_wait(pipeline)
        finally:
            _remove_plan(job, plan_folder)
    log.info("extract_features: job counters %s", job_counters(result))
    manifest = read_manifest(job.output_dir)
    assert manifest is not None, f"the job finished without writing its {MANIFEST_NAME}"
    return manifest
