"""`delf match_images`: the original's flags; match two .delf files, draw the inliers."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_flag, non_negative_int, positive_int
from delf_core.matching.match import MatchConfig

_DEFAULTS = MatchConfig()
_NAME = "delf match_images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    add_flag(parser, "image_1_path", "test_images/image_1.jpg", "image 1 (local path or gs://)")
    add_flag(parser, "image_2_path", "test_images/image_2.jpg", "image 2 (local path or gs://)")
    add_flag(parser, "features_1_path", "test_features/image_1.delf", "DELF features of image 1")
    add_flag(parser, "features_2_path", "test_features/image_2.delf", "DELF features of image 2")
    add_flag(parser, "output_image", "test_match.png", "the match picture, as PNG")
    add_flag(
        parser,
        "distance_threshold",
        d.distance_threshold,
        "descriptor distance below which a nearest neighbour is a putative match",
        type=float,
    )
    add_flag(
        parser,
        "residual_threshold",
        d.residual_threshold,
        "RANSAC inlier distance in pixels",
        type=float,
    )
    add_flag(parser, "max_trials", d.max_trials, "most RANSAC samples", type=positive_int)
    add_flag(
        parser,
        "seed",
        d.seed,
        "RANSAC seed: the same features always give the same inlier count "
        "(the original is unseeded)",
        type=non_negative_int,
    )


def config_from_args(args: argparse.Namespace) -> MatchConfig:
    return MatchConfig(
        distance_threshold=args.distance_threshold,
        residual_threshold=args.residual_threshold,
        max_trials=args.max_trials,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    from delf_core.features.feature_io import read_from_file
    from delf_core.matching import draw_matches, match_features, read_image, write_png

    features = []
    for index, path in ((1, args.features_1_path), (2, args.features_2_path)):
        try:
            loaded = read_from_file(path)
        except FileNotFoundError:
            return _error(f"--features_{index}_path: no such file: {path}")
        except ValueError as error:  # names the file already
            return _error(f"--features_{index}_path: {error}")
        if not len(loaded.locations):
            # An empty file parses as no features; matching it would report 0 inliers
            # as if the images were compared.
            return _error(
                f"--features_{index}_path: {path} holds no features (an empty file: an "
                "extraction that failed or found no feature above score_threshold); "
                "extract it again"
            )
        print(f"Loaded image {index}'s {len(loaded.locations)} features")
        features.append(loaded)
    images = []
    for index, path in ((1, args.image_1_path), (2, args.image_2_path)):
        try:
            images.append(read_image(path))
        except FileNotFoundError:
            return _error(f"--image_{index}_path: no such file: {path}")
        except ValueError as error:  # names the file already
            return _error(f"--image_{index}_path: {error}")

    try:
        result = match_features(features[0], features[1], config_from_args(args))
    except ValueError as error:
        return _error(f"{args.features_1_path} and {args.features_2_path}: {error}")
    print(f"Found {result.num_inliers} inliers")

    picture = draw_matches(*images, result.locations_1, result.locations_2, result.inliers)
    try:
        write_png(args.output_image, picture)
    except OSError as error:
        return _error(f"--output_image: cannot write {args.output_image} ({error})")
    return 0


def _error(message: str) -> int:
    print(f"{_NAME}: error: {message}", file=sys.stderr)
    return 2
