"""`delf download NUM_TRAIN NUM_INDEX NUM_TEST`: the seed's download_dataset.sh, done right."""

from __future__ import annotations

import argparse
import sys

from delf_cli.progress import BarProgress, make_progress
from delf_core.cli_flags import add_bool_flag, add_flag, non_negative_int, positive_int
from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.gldv2 import layout


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "num_train",
        type=non_negative_int,
        metavar="NUM_TRAIN",
        help="train tars to fetch, images_000 onwards (at most 500)",
    )
    parser.add_argument(
        "num_index",
        type=non_negative_int,
        metavar="NUM_INDEX",
        help="index tars to fetch (at most 100)",
    )
    parser.add_argument(
        "num_test",
        type=non_negative_int,
        metavar="NUM_TEST",
        help="test tars to fetch (at most 20)",
    )
    add_flag(
        parser,
        "output_dir",
        "gldv2_dataset",
        "folder or fsspec URL (gs://...) that gets train/, index/ and test/",
    )
    add_flag(
        parser, "base_url", layout.DEFAULT_BASE_URL, "root of the GLDv2 bucket or of a mirror of it"
    )
    add_flag(parser, "max_workers", 8, "files fetched at once", type=positive_int)
    add_bool_flag(parser, "delete_tars", False, "delete each tar once verified and unpacked")
    add_flag(parser, "retries", 5, "attempts after the first for each file", type=non_negative_int)
    add_flag(
        parser,
        "backoff_seconds",
        1.0,
        "first delay between attempts; doubles each time, with jitter",
        type=float,
    )
    add_flag(
        parser,
        "timeout_seconds",
        60.0,
        "seconds without a byte before an attempt is abandoned",
        type=float,
    )
    add_flag(
        parser,
        "staging_dir",
        None,
        "local folder for tars in flight when --output_dir is remote (default: temp dir)",
    )


def run(args: argparse.Namespace) -> int:
    config = DownloadConfig(
        num_train=args.num_train,
        num_index=args.num_index,
        num_test=args.num_test,
        output_dir=args.output_dir,
        base_url=args.base_url,
        max_workers=args.max_workers,
        delete_tars=args.delete_tars,
        retry=RetryPolicy(
            retries=args.retries,
            backoff_seconds=args.backoff_seconds,
            read_timeout=args.timeout_seconds,
        ),
        staging_dir=args.staging_dir,
    )
    try:
        config.validate()
    except ValueError as error:
        print(f"delf download: error: {error}", file=sys.stderr)
        return 2
    progress = make_progress()
    try:
        report = download(config, progress)
    finally:
        if isinstance(progress, BarProgress):
            progress.close()
    print(
        f"delf download: {report.count('downloaded')} downloaded, "
        f"{report.count('skipped')} already done, {len(report.failed)} failed; "
        f"{report.images} images under {config.output_dir}"
    )
    for outcome in report.failed:
        print(
            f"delf download: failed: {outcome.split}/{outcome.name}: {outcome.error}",
            file=sys.stderr,
        )
    return 1 if report.failed else 0
