"""The mini dataset's knobs: one frozen config, whose options are the flags."""

from __future__ import annotations

import dataclasses

from delf_core.gldv2 import layout, views
from delf_core.step_config import check, option

# GLDv2 landmark ids are sparse ints below this bound.
NUM_LANDMARK_IDS = 203094
# Where `delf make_mini_dataset` writes and `delf serve_mirror` serves from.
DEFAULT_OUTPUT_DIR = "gldv2_mini"

_VIEW = views.ViewConfig()
_SIZES = "split sizes"
_VIEWS = "photographs and views"


def _count(default: int, help: str, minimum: int = 0) -> int:
    return option(default, help, minimum=minimum, group=_SIZES)


def _view(default: float, help: str, minimum: float, maximum: float) -> float:
    return option(default, help, minimum=minimum, maximum=maximum, group=_VIEWS)


@dataclasses.dataclass(frozen=True)
class MiniDatasetConfig:
    """Every knob of the mini dataset; its options are the `delf make_mini_dataset` flags."""

    seed: int = option(
        0, "Seed of every random choice; the same seed gives byte-identical files.", minimum=0
    )
    num_landmarks: int = _count(10, "Train landmarks.", minimum=1)
    views_per_landmark: int = _count(
        6,
        "Synthetic views of each train landmark; at least 2, so that every clean landmark "
        "can be matched.",
        minimum=2,
    )
    num_noisy_images: int = _count(
        4,
        "Wrongly labelled train images, in train.csv but not train_clean.csv; at least 1, "
        "so that train_clean.csv leaves some images out.",
        minimum=1,
    )
    num_index_landmarks: int = _count(
        6, "Retrieval landmarks of the index split, none of them in train.", minimum=1
    )
    index_views_per_landmark: int = _count(4, "Index images of each index landmark.", minimum=1)
    num_retrieval_queries: int = _count(8, "Test images that are new views of index landmarks.")
    num_recognition_queries: int = _count(5, "Test images that are new views of train landmarks.")
    num_distractors: int = _count(
        3, "Test images of no landmark (Usage Ignored in both solutions)."
    )
    num_train_tars: int = _count(2, "Tars the train images are spread over.", minimum=1)
    num_index_tars: int = _count(1, "Tars the index images are spread over.", minimum=1)
    num_test_tars: int = _count(1, "Tars the test images are spread over.", minimum=1)
    min_image_size: int = option(
        _VIEW.min_size, "Smallest longest side of an image, in pixels.", minimum=32, group=_VIEWS
    )
    max_image_size: int = option(
        _VIEW.max_size, "Largest longest side of an image, in pixels.", group=_VIEWS
    )
    min_region_fraction: float = _view(
        0.4, "Smallest side of a landmark region, as a fraction of its photo's.", 0.05, 1.0
    )
    max_region_fraction: float = _view(
        0.7, "Largest side of a landmark region, as a fraction of its photo's.", 0.05, 1.0
    )
    max_region_overlap: float = _view(
        0.1, "Intersection over union sought between two landmarks of one photo.", 0.0, 1.0
    )
    max_corner_shift: float = _view(
        _VIEW.max_corner_shift,
        "Perspective: how far each region corner may move, in region sides; at most 0.25, "
        "beyond which a view can fold over.",
        0.0,
        0.25,
    )
    max_rotation_degrees: float = _view(
        _VIEW.max_rotation_degrees, "In-plane rotation of a view, either way.", 0.0, 180.0
    )
    max_zoom_change: float = _view(
        _VIEW.max_zoom_change,
        "Zoom of a view: the region grows or shrinks by up to this fraction.",
        0.0,
        1.0,
    )
    max_brightness_change: float = _view(
        _VIEW.max_brightness_change, "Brightness factor within 1 -/+ this.", 0.0, 0.9
    )
    max_contrast_change: float = _view(
        _VIEW.max_contrast_change, "Contrast factor within 1 -/+ this.", 0.0, 0.9
    )
    max_gamma_change: float = _view(
        _VIEW.max_gamma_change, "Gamma within 1/(1 + this) .. 1 + this.", 0.0, 1.0
    )
    min_jpeg_quality: int = _view(
        _VIEW.min_jpeg_quality, "Lowest JPEG quality of an image.", 1, 100
    )
    max_jpeg_quality: int = _view(
        _VIEW.max_jpeg_quality, "Highest JPEG quality of an image.", 1, 100
    )

    def num_images(self) -> dict[str, int]:
        """Images per split."""
        return {
            layout.TRAIN: self.num_landmarks * self.views_per_landmark + self.num_noisy_images,
            layout.INDEX: self.num_index_landmarks * self.index_views_per_landmark,
            layout.TEST: (
                self.num_retrieval_queries + self.num_recognition_queries + self.num_distractors
            ),
        }

    def num_tars(self) -> dict[str, int]:
        """Tars per split."""
        return {
            layout.TRAIN: self.num_train_tars,
            layout.INDEX: self.num_index_tars,
            layout.TEST: self.num_test_tars,
        }

    def view_config(self) -> views.ViewConfig:
        return views.ViewConfig(
            min_size=self.min_image_size,
            max_size=self.max_image_size,
            max_corner_shift=self.max_corner_shift,
            max_rotation_degrees=self.max_rotation_degrees,
            max_zoom_change=self.max_zoom_change,
            max_brightness_change=self.max_brightness_change,
            max_contrast_change=self.max_contrast_change,
            max_gamma_change=self.max_gamma_change,
            min_jpeg_quality=self.min_jpeg_quality,
            max_jpeg_quality=self.max_jpeg_quality,
        )

    def validate(self) -> None:
        """Raises ValueError naming the first bad flag and what to do about it."""
        check(self)  # each option's own bounds
        if self.num_images()[layout.TEST] == 0:
            raise ValueError(
                "--num_retrieval_queries, --num_recognition_queries and --num_distractors "
                "are all 0: set one of them >= 1 so that the test split has images"
            )
        if self.num_landmarks + self.num_index_landmarks > NUM_LANDMARK_IDS:
            raise ValueError(
                f"--num_landmarks plus --num_index_landmarks exceed the "
                f"{NUM_LANDMARK_IDS} GLDv2 landmark ids; lower them"
            )
        for split, tars in self.num_tars().items():
            images = self.num_images()[split]
            if tars > images:
                raise ValueError(
                    f"--num_{split}_tars={tars} is more than the {images} {split} images; "
                    f"every tar needs one, so use at most {images}"
                )
        self._not_below("max_image_size", "min_image_size")
        self._not_below("max_region_fraction", "min_region_fraction")
        self._not_below("max_jpeg_quality", "min_jpeg_quality")

    def _not_below(self, name: str, other: str) -> None:
        value, floor = getattr(self, name), getattr(self, other)
        if value < floor:
            raise ValueError(
                f"--{name}={value} is less than --{other}={floor}; raise one or lower the other"
            )
