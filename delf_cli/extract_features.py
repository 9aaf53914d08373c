"""`delf extract_features`: the original list form (.delf) and the DELG dataset form."""

from __future__ import annotations

import argparse
import logging
import sys

from delf_cli.flags import add_bool_flag, add_options, build_config
from delf_core.features.extract_job import ExtractFeaturesConfig

log = logging.getLogger(__name__)

# With --beam, the flags this parser does not know are Beam pipeline options.
PASSES_UNKNOWN_FLAGS = True
# Failed images printed at the end; all of them are in the report.
_SHOWN_FAILURES = 10


# The step config its flags are made from.
CONFIG = ExtractFeaturesConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)
    add_bool_flag(
        parser,
        "beam",
        False,
        "run as an Apache Beam job (locally or on Dataflow); other flags are Beam options",
    )


def run(args: argparse.Namespace) -> int:
    flags = build_config(args, ExtractFeaturesConfig)
    if args.beam:
        return _run_beam(flags, args.pipeline_args)
    if args.pipeline_args:
        log.error("unknown flags %s (Beam options need --beam)", " ".join(args.pipeline_args))
        return 2
    from delf_core.export.current import export_files
    from delf_core.features.extract import ProgressLog
    from delf_core.features.extract_job import failures_line, finish
    from delf_core.features.extractor import Extractor
    from delf_core.features.record import extract_recorded, features_source

    try:
        job = flags.job()
        config, items = job.load()
        extractor = Extractor(config)
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    log.info("extracting %d images to %s", len(items), job.output_dir)
    # As the flow's task: files another model or config made are extracted again, and
    # the folder's manifest records what made each file.
    source = features_source(export_files(config.model_path), config, job.delg_form)
    report, replaced = extract_recorded(
        extractor, items, job.output_dir, job.delg_form, source, on_progress=ProgressLog()
    )
    if replaced:
        log.info("removed %d feature files another model or config made", replaced)
    try:
        # The report and manifest the Beam job writes too: the failed images and why.
        counts = {"extracted": report.extracted, "skipped": report.skipped}
        finish(job, config, counts, report.failed, runner="local")
    except OSError as error:
        log.error("cannot write the report into %s: %s", job.output_dir, error)
        return 1
    print(
        f"{report.extracted} extracted, {report.skipped} already done, "
        f"{len(report.failed)} failed, of {report.total} images"
    )
    for name, reason in report.failed[:_SHOWN_FAILURES]:
        print(f"failed: {name}: {reason}")
    if len(report.failed) > _SHOWN_FAILURES:
        print(f"... and {len(report.failed) - _SHOWN_FAILURES} more failed")
    if report.failed and not flags.allow_failures:
        line = failures_line(len(report.failed), report.total, job.output_dir)
        print(f"delf extract_features: error: {line} (--allow_failures exits 0)", file=sys.stderr)
        return 1
    return 0


def _run_beam(flags: ExtractFeaturesConfig, pipeline_args: list[str]) -> int:
    """The job on Beam; the same counts, report and exit status."""
    from beam_jobs.extract_features import run_extract
    from delf_core.features.extract_job import failures_line

    logging.getLogger("apache_beam").setLevel(logging.WARNING)
    try:
        manifest = run_extract(flags.job(), pipeline_args)
    except (OSError, ValueError) as error:
        print(f"extract_features: error: {error}", file=sys.stderr)
        return 1
    counts = manifest["counts"]
    print(
        f"{counts['extracted']} extracted, {counts['skipped']} already done, "
        f"{counts['failed']} failed, of {counts['total']} images"
    )
    if counts["failed"]:
        line = failures_line(counts["failed"], counts["total"], manifest["params"]["output_dir"])
        if not flags.allow_failures:
            print(f"extract_features: error: {line} (--allow_failures exits 0)", file=sys.stderr)
            return 1
        print(line)
    return 0
