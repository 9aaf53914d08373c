"""`delf download NUM_TRAIN NUM_INDEX NUM_TEST`: the seed's download_dataset.sh, done right."""

from __future__ import annotations

import argparse
import sys

from delf_cli.progress import BarProgress, make_progress
from delf_core.cli_flags import add_bool_flag, add_flag, non_negative_int, positive_int
from delf_core.download import DownloadConfig, RetryPolicy, download
from delf_core.gldv2 import layout


def non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return value


def positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text}")
    return value


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
        "min_bytes_per_second",
        RetryPolicy.min_bytes_per_second,
        "an attempt slower than this over --rate_window_seconds is cut short and resumed "
        "(a server trickling bytes never trips --timeout_seconds); 0: no check",
        type=non_negative_float,
    )
    add_flag(
        parser,
        "rate_window_seconds",
        RetryPolicy.rate_window_seconds,
        "seconds over which --min_bytes_per_second is measured",
        type=positive_float,
    )
    add_flag(
        parser,
        "file_deadline_seconds",
        RetryPolicy.file_deadline_seconds,
        "longest one attempt at one file may take before it is cut short and resumed; 0: none",
        type=non_negative_float,
    )
    add_flag(
        parser,
        "max_unpacked_bytes",
        DownloadConfig.max_unpacked_bytes,
        "most bytes one tar may unpack (it may never unpack more than its own size either)",
        type=positive_int,
    )
    add_flag(
        parser,
        "max_tar_members",
        DownloadConfig.max_tar_members,
        "most members (files and folders) one tar may hold; a GLDv2 tar holds about 6,500 images",
        type=positive_int,
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
            min_bytes_per_second=args.min_bytes_per_second,
            rate_window_seconds=args.rate_window_seconds,
            file_deadline_seconds=args.file_deadline_seconds,
        ),
        staging_dir=args.staging_dir,
        max_unpacked_bytes=args.max_unpacked_bytes,
        max_tar_members=args.max_tar_members,
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
    left_out = [o for o in report.outcomes if o.skipped_members]
    if left_out:
        print(
            f"delf download: {sum(o.skipped_members for o in left_out)} tar members that are "
            f"not images at a/b/c/<id>.jpg were left out, from "
            + ", ".join(f"{o.split}/{o.name}" for o in left_out[:5])
            + (" ..." if len(left_out) > 5 else ""),
            file=sys.stderr,
        )
    for outcome in report.failed:
        print(
            f"delf download: failed: {outcome.split}/{outcome.name}: {outcome.error}",
            file=sys.stderr,
        )
    return 1 if report.failed else 0
