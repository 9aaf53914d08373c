"""A folder's feature extraction by the extract_features Beam job, recorded as the flow's own.

The flow extracts in its own process by default; for an index of 761k images it can
hand the work to the Beam job (`beam_jobs.extract_features`) on any runner instead.
Stale files go first and the record follows, exactly as `extract_recorded` does, so
a rerun skips (the task's cache) or finishes what is left (the job's plan).
"""

from __future__ import annotations

import csv
import io

from delf_core import storage
from delf_core.features.extract import ExtractReport, ImageItem
from delf_core.features.extract_job import REPORT_NAME, ExtractJobConfig
from delf_core.features.record import record_features, remove_stale


def read_failures(output_dir: str) -> list[tuple[str, str]]:
    """(name, reason) of each image the job's report lists as failed."""
    fs, path = storage.resolve(storage.join(output_dir, REPORT_NAME))
    with fs.open(path, "rb") as handle:
        rows = csv.DictReader(io.TextIOWrapper(handle, encoding="utf-8", newline=""))
        return [(row["name"], row["reason"]) for row in rows]


def extract_dataset_with_beam(
    config,
    items: list[ImageItem],
    job: ExtractJobConfig,
    source: str,
    runner: str,
    pipeline_options: list[str],
) -> tuple[ExtractReport, int]:
    """Removes stale files, runs the Beam job over the dataset, and records what made each file.

    Args:
        config: The DelfConfig, already written at `job.config_path`.
        items: The images of the job's dataset and image set (the task's plan).
        job: The DELG-form job: config file, ground truth, images and output folder.
        source: `features_source` of the model and config.
        runner: A Beam runner (`beam_jobs.options.RUNNERS` or a class path).
        pipeline_options: Other Beam flags (`--project=...`, `--dask_client_address=...`).

    Returns:
        The extraction's report, and how many stale files were removed first.
    """
    from beam_jobs.extract_features import run_extract  # Beam: only on this path

    replaced = remove_stale(items, job.output_dir, config, job.delg_form, source)
    manifest = run_extract(job, [f"--runner={runner}", *pipeline_options])
    counts = manifest["counts"]
    failed = read_failures(job.output_dir) if counts["failed"] else []
    report = ExtractReport(counts["extracted"], counts["skipped"], failed)
    rewritten = bool(report.extracted or replaced)
    record_features(items, job.output_dir, source, {name for name, _ in failed}, rewritten)
    return report, replaced
