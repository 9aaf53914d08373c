"""Entry point of the `delf` command."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from types import ModuleType

from delf_cli.flags import normalize_bool_values

# One module per subcommand, named after the step (DESIGN.md rule 2). Each module has
# add_arguments(parser) and run(args) -> exit code, and is imported only when used,
# so `delf --help` stays fast.
SUBCOMMANDS = {
    "download": "GLDv2 download: parallel, checksummed, resumable (download_dataset.sh).",
    "build_image_dataset": "GLDv2 images to sharded TFRecords, as an Apache Beam job.",
    "train": "Train DELF (local) or DELG (local + global) on the TFRecords.",
    "export_local_model": "Export the local-feature (DELF) extraction graph as a SavedModel.",
    "export_global_model": "Export the global-descriptor extraction graph as a SavedModel.",
    "export_local_and_global_model": "Export local and global (DELG) extraction as a SavedModel.",
    "export_model": "Legacy local export (--block3_strides off by default).",
    "extract_features": "Extract .delf, or DELG .delg_local/.delg_global, features of images.",
    "match_images": "Match two images' local features with RANSAC; draw the inliers.",
    "perform_retrieval": "Rank by global descriptor, optionally re-rank by RANSAC; report mAP.",
    "make_retrieval_submission": "GLDv2 retrieval submission: top 100 index ids per test image.",
    "compute_retrieval_metrics": "GLDv2 retrieval metrics (mAP@100, P@k, first-hit position).",
    "compute_recognition_metrics": "GLDv2 recognition metrics (GAP, top-1 accuracy).",
    "make_mini_dataset": "Write a small GLDv2-layout dataset built from bundled photographs.",
    "make_revisited_ground_truth": "A downloaded test/index split as Revisited ground truth.",
    "serve_mirror": "Serve a GLDv2-layout folder over HTTP, with Range support.",
    "gldv2": "Run the whole pipeline flow here, with a deployment's parameters.",
    "result_storage": "Save a gs:// (or local) block for Prefect's results and cache records.",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="delf",
        description="DELF/DELG training pipeline on the Google Landmarks Dataset v2.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, summary in SUBCOMMANDS.items():
        subparsers.add_parser(name, help=summary, description=summary, add_help=False)
    return parser


def parse_args(argv: list[str]) -> tuple[ModuleType, argparse.Namespace]:
    """The subcommand's module and its parsed flags; exits with usage on bad input."""
    parser = build_parser()
    if not argv or argv[0] not in SUBCOMMANDS:
        parser.parse_args(argv)  # prints help or the "invalid choice" error and exits
        raise SystemExit(2)
    name = argv[0]
    module = importlib.import_module(f"delf_cli.{name}")
    sub = argparse.ArgumentParser(prog=f"delf {name}", description=SUBCOMMANDS[name])
    module.add_arguments(sub)
    argv = normalize_bool_values(sub, argv[1:])
    if getattr(module, "PASSES_UNKNOWN_FLAGS", False):
        args, args.pipeline_args = sub.parse_known_args(argv)
        return module, args
    return module, sub.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # TensorFlow's C++ start-up chatter (CPU features, no CUDA) is noise on a terminal.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    module, args = parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    # Beam's stage chatter and Prefect's API calls (httpx).
    for noisy in ("apache_beam", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return int(module.run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
