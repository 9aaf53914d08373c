"""`delf build_image_dataset`: the original's flags, plus any Beam pipeline option."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_options, build_config
from delf_core.build_image_dataset.config import BuildConfig

# Flags this command does not know are Beam pipeline options (--runner, --project, ...).
PASSES_UNKNOWN_FLAGS = True


# The step config its flags are made from.
CONFIG = BuildConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    """Runs the build; `args.pipeline_args` holds the Beam options."""
    from beam_jobs.build_image_dataset import BuildJobError, run_build
    from delf_cli.progress import StepProgress
    from delf_core.build_image_dataset.write import StrictModeError

    progress = StepProgress("build_image_dataset", "images")
    try:
        manifest = run_build(
            build_config(args, BuildConfig),
            getattr(args, "pipeline_args", []),
            on_progress=progress,
        )
    except (ValueError, StrictModeError, BuildJobError, OSError) as error:
        message = " ".join(str(error).splitlines())
        print(f"build_image_dataset: error: {message}", file=sys.stderr)
        return 2 if isinstance(error, ValueError) else 1
    finally:
        progress.close()
    counts = ", ".join(
        f"{name} {split['records']} records in {len(split['shards'])} shards"
        for name, split in manifest["splits"].items()
    )
    problems = ", ".join(f"{count} {kind}" for kind, count in manifest["problems"].items())
    print(
        f"build_image_dataset: {counts}; problems: {problems or 'none'} (see {manifest['report']})"
    )
    return 0
