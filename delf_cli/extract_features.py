"""`delf extract_features`: the original list form (.delf) and the DELG dataset form."""

from __future__ import annotations

import argparse
import logging
import sys

from delf_core.cli_flags import add_bool_flag

# The flags live with the job in delf_core, so that the Beam job (beam_jobs, which may
# not import delf_cli) takes exactly the same ones.
from delf_core.features.extract_job import add_arguments as add_job_arguments
from delf_core.features.extract_job import config_from_args

log = logging.getLogger(__name__)

# With --beam, the flags this parser does not know are Beam pipeline options.
PASSES_UNKNOWN_FLAGS = True
# Failed images printed at the end; all of them are in the report.
_SHOWN_FAILURES = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_job_arguments(parser, images_glob=True)
    add_bool_flag(
        parser,
        "beam",
        False,
        "run as an Apache Beam job (locally or on Dataflow); other flags are Beam options",
    )


def run(args: argparse.Namespace) -> int:
    if args.beam:
        from beam_jobs.extract_features import run as run_beam

        return run_beam(args)
    if args.pipeline_args:
        log.error("unknown flags %s (Beam options need --beam)", " ".join(args.pipeline_args))
        return 2
    from delf_core.features.extract import ProgressLog
    from delf_core.features.extract_job import failures_line, finish
    from delf_core.features.extractor import Extractor
    from delf_core.features.record import extract_recorded, features_source

    try:
        job = config_from_args(args)
        config, items = job.load()
        extractor = Extractor(config)
    except (OSError, ValueError) as error:
        log.error("%s", error)
        return 1
    log.info("extracting %d images to %s", len(items), job.output_dir)
    # As the flow's task: files another model or config made are extracted again, and
    # the folder's manifest records what made each file.
    source = features_source(config.model_path, config, job.delg_form)
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
    if report.failed and not args.allow_failures:
        line = failures_line(len(report.failed), report.total, job.output_dir)
        print(f"delf extract_features: error: {line} (--allow_failures exits 0)", file=sys.stderr)
        return 1
    return 0
