"""`delf make_mini_dataset`: write a small GLDv2-layout dataset built from bundled photographs."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

from delf_cli.flags import add_flag
from delf_core.gldv2 import layout
from delf_core.gldv2.mini import MiniDatasetConfig, make_mini_dataset

HELP = "Write a small GLDv2-layout dataset built from bundled photographs."

# One flag per MiniDatasetConfig field, same name; the defaults come from the config.
_FLAG_HELP = {
    "seed": "Seed of every random choice; the same seed gives byte-identical files.",
    "num_landmarks": "Train landmarks.",
    "views_per_landmark": "Synthetic views of each train landmark (>= 2).",
    "num_noisy_images": "Wrongly labelled train images, in train.csv but not train_clean.csv.",
    "num_index_landmarks": "Retrieval landmarks of the index split, none of them in train.",
    "index_views_per_landmark": "Index images of each index landmark.",
    "num_retrieval_queries": "Test images that are new views of index landmarks.",
    "num_recognition_queries": "Test images that are new views of train landmarks.",
    "num_distractors": "Test images of no landmark (Usage Ignored in both solutions).",
    "num_train_tars": "Tars the train images are spread over.",
    "num_index_tars": "Tars the index images are spread over.",
    "num_test_tars": "Tars the test images are spread over.",
    "min_image_size": "Smallest longest side of an image, in pixels.",
    "max_image_size": "Largest longest side of an image, in pixels.",
    "min_region_fraction": "Smallest side of a landmark region, as a fraction of its photo's.",
    "max_region_fraction": "Largest side of a landmark region, as a fraction of its photo's.",
    "max_region_overlap": "Intersection over union sought between two landmarks of one photo.",
    "max_corner_shift": "Perspective: how far each region corner may move, in region sides.",
    "max_rotation_degrees": "In-plane rotation of a view, either way.",
    "max_zoom_change": "Zoom of a view: the region grows or shrinks by up to this fraction.",
    "max_brightness_change": "Brightness factor within 1 -/+ this.",
    "max_contrast_change": "Contrast factor within 1 -/+ this.",
    "max_gamma_change": "Gamma within 1/(1 + this) .. 1 + this.",
    "min_jpeg_quality": "Lowest JPEG quality of an image.",
    "max_jpeg_quality": "Highest JPEG quality of an image.",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_flag(parser, "output_dir", "gldv2_mini", "Folder or URL (gs://, memory://) to write to.")
    defaults = MiniDatasetConfig()
    for field in dataclasses.fields(MiniDatasetConfig):
        default = getattr(defaults, field.name)
        add_flag(parser, field.name, default, _FLAG_HELP[field.name], type=type(default))


def run(args: argparse.Namespace) -> int:
    config = MiniDatasetConfig(
        **{field.name: getattr(args, field.name) for field in dataclasses.fields(MiniDatasetConfig)}
    )
    start = time.monotonic()
    try:
        summary = make_mini_dataset(config, args.output_dir)
    except ValueError as error:
        print(f"delf make_mini_dataset: error: {error}", file=sys.stderr)
        return 2
    per_split = ", ".join(
        f"{split} {summary.images[split]} in {len(summary.tars[split])} tar(s)"
        for split in (layout.TRAIN, layout.INDEX, layout.TEST)
    )
    verb = "already complete" if summary.skipped else "wrote"
    print(
        f"make_mini_dataset: {verb} {summary.num_images} images ({per_split}), "
        f"{summary.landmarks[layout.TRAIN]} train + {summary.landmarks[layout.INDEX]} index "
        f"landmarks, {summary.total_bytes / 1e6:.1f} MB in {args.output_dir} "
        f"({time.monotonic() - start:.1f} s)"
    )
    return 0
