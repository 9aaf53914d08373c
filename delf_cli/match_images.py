"""`delf match_images`: the original's flags; match two .delf files, draw the inliers."""

from __future__ import annotations

import argparse
import sys

from delf_cli.flags import add_options, build_config
from delf_core.matching.match import MatchImagesConfig

_NAME = "delf match_images"


# The step config its flags are made from.
CONFIG = MatchImagesConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, CONFIG)


def run(args: argparse.Namespace) -> int:
    from delf_core.features.feature_io import read_from_file
    from delf_core.matching import draw_matches, match_features, read_image, write_png

    try:
        flags = build_config(args, MatchImagesConfig)
    except ValueError as error:
        return _error(str(error))
    features = []
    for index, path in ((1, flags.features_1_path), (2, flags.features_2_path)):
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
    for index, path in ((1, flags.image_1_path), (2, flags.image_2_path)):
        try:
            images.append(read_image(path))
        except FileNotFoundError:
            return _error(f"--image_{index}_path: no such file: {path}")
        except ValueError as error:  # names the file already
            return _error(f"--image_{index}_path: {error}")

    try:
        result = match_features(features[0], features[1], flags.matching)
    except ValueError as error:
        return _error(f"{flags.features_1_path} and {flags.features_2_path}: {error}")
    print(f"Found {result.num_inliers} inliers")

    picture = draw_matches(*images, result.locations_1, result.locations_2, result.inliers)
    try:
        write_png(flags.output_image, picture)
    except OSError as error:
        return _error(f"--output_image: cannot write {flags.output_image} ({error})")
    return 0


def _error(message: str) -> int:
    print(f"{_NAME}: error: {message}", file=sys.stderr)
    return 2
