"""Extraction over a list of images: one feature file per image, skipping finished ones."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from delf_core import storage
from delf_core.features import datum_io, feature_io
from delf_core.features.naming import (
    DELF_SUFFIX,
    DELG_GLOBAL_SUFFIX,
    DELG_LOCAL_SUFFIX,
    child_path,
)
from delf_core.features.preprocess import decode_rgb
from delf_core.revisited_dataset import read_dataset_file

if TYPE_CHECKING:  # an extractor brings TensorFlow; listing and planning images need none
    from delf_core.features.extractor import Extractor

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image to extract.

    Attributes:
        name: Output file stem: `<name>.delf`, `<name>.delg_local`, ...
        path: The image (local path or URL).
        bbox: For Revisited queries, the crop [x1, y1, x2, y2] in pixels.
    """

    name: str
    path: str
    bbox: tuple[float, float, float, float] | None = None


@dataclasses.dataclass
class ExtractReport:
    """Counts of one extraction run, and the images that failed, with why."""

    extracted: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = dataclasses.field(default_factory=list)

    @property
    def total(self) -> int:
        return self.extracted + self.skipped + len(self.failed)


def items_from_list(list_images_path: str) -> list[ImageItem]:
    """The images of a list file (one path per line), named after their file stem."""
    fs, path = storage.resolve(list_images_path)
    with fs.open(path, "r") as handle:
        paths = [line.strip() for line in handle if line.strip()]
    return [ImageItem(os.path.splitext(os.path.basename(p))[0], p) for p in paths]


def items_from_dataset(dataset_file_path: str, images_dir: str, image_set: str) -> list[ImageItem]:
    """The query (cropped to their boxes) or index images of a Revisited dataset file.

    Raises:
        ValueError: naming the file: a bad file, or an image name that leaves `images_dir`.
    """
    dataset = read_dataset_file(dataset_file_path)
    names = dataset.images(image_set)
    items = []
    for i, name in enumerate(names):
        bbox = None
        if image_set == "query":
            bbox = tuple(float(v) for v in dataset.ground_truth[i]["bbx"])
        image = child_path(images_dir, name, ".jpg", dataset_file_path)
        items.append(ImageItem(name, image, bbox))
    return items


def output_paths(item: ImageItem, output_dir: str, delg_form: bool, extractor_config) -> list:
    """(kind, path) of each file `item` gets: `local` and/or `global`.

    Raises:
        ValueError: naming the image when its name would put a file outside `output_dir`.
    """
    kinds = [("local", DELF_SUFFIX)]
    if delg_form:
        kinds = [("local", DELG_LOCAL_SUFFIX)] if extractor_config.use_local_features else []
        if extractor_config.use_global_features:
            kinds.append(("global", DELG_GLOBAL_SUFFIX))
    return [(kind, child_path(output_dir, item.name, suffix, item.path)) for kind, suffix in kinds]


def load_item(item: ImageItem) -> tuple[np.ndarray, float]:
    """The image (cropped to `bbox`) and the resize factor that keeps the size bounds.

    A crop scales `max_image_size` by (crop's largest side / image's largest side), so
    a query crop is resized as it would be inside its whole image.
    """
    fs, path = storage.resolve(item.path)
    with fs.open(path, "rb") as handle:
        image = decode_rgb(handle.read(), source=item.path)
    if item.bbox is None:
        return image, 1.0
    x1, y1, x2, y2 = (round(v) for v in item.bbox)
    full = Image.fromarray(image)
    cropped = full.crop((x1, y1, x2, y2))
    return np.asarray(cropped), max(cropped.size) / max(full.size)


def extract_item(extractor: Extractor, item: ImageItem, output_dir: str, delg_form: bool) -> bool:
    """Extracts one image and writes its files; False when they all exist already."""
    outputs = output_paths(item, output_dir, delg_form, extractor.config)
    if all(storage.exists(path) for _, path in outputs):
        return False
    image, resize_factor = load_item(item)
    features = extractor(image, resize_factor=resize_factor)
    for kind, path in outputs:
        if kind == "local":
            local = features.local
            feature_io.write_to_file(
                path, local.locations, local.scales, local.descriptors, local.attention
            )
        else:
            datum_io.write_to_file(features.global_descriptor, path)
    return True


def extract_images(
    extractor: Extractor,
    items: Sequence[ImageItem] | Iterable[ImageItem],
    output_dir: str,
    *,
    delg_form: bool = False,
    on_progress: Callable[[ExtractReport, int], None] | None = None,
) -> ExtractReport:
    """Extracts every item; an unreadable image is reported and the run goes on.

    Args:
        extractor: Loaded once for all images.
        items: The images.
        output_dir: Where the feature files go (created if needed).
        delg_form: `.delg_local`/`.delg_global` files instead of `.delf`.
        on_progress: Called after each image with the report so far and the total.

    Returns:
        The counts, and (name, reason) of each failed image.
    """
    import tensorflow as tf  # loaded with the extractor already

    items = list(items)
    fs, path = storage.resolve(output_dir)
    fs.makedirs(path, exist_ok=True)
    report = ExtractReport()
    for item in items:
        try:
            if extract_item(extractor, item, output_dir, delg_form):
                report.extracted += 1
            else:
                report.skipped += 1
        except (OSError, ValueError, tf.errors.OpError) as error:
            # One bad image (unreadable, or one the model cannot take) is reported;
            # the others are still extracted.
            log.warning("skipping %s: %s", item.path, error)
            report.failed.append((item.name, str(error)))
        if on_progress is not None:
            on_progress(report, len(items))
    return report


class ProgressLog:
    """Logs count, rate and ETA every `every` images, as the original every 100."""

    def __init__(self, every: int = 100):
        self.every = every
        self.start = time.monotonic()

    def __call__(self, report: ExtractReport, total: int) -> None:
        done = report.total
        if done % self.every and done != total:
            return
        elapsed = time.monotonic() - self.start
        rate = report.extracted / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("nan")
        log.info(
            "%d/%d images (%d extracted, %d skipped, %d failed), %.2f images/s, ETA %.0f s",
            done, total, report.extracted, report.skipped, len(report.failed), rate, eta,
        )  # fmt: skip
