"""The mini dataset's knobs: one frozen config, whose field names are the flags."""

from __future__ import annotations

import dataclasses

from delf_core.gldv2 import layout, views

# GLDv2 landmark ids are sparse ints below this bound.
NUM_LANDMARK_IDS = 203094

_VIEW = views.ViewConfig()


@dataclasses.dataclass(frozen=True)
class MiniDatasetConfig:
    """Every knob of the mini dataset; the field names are the `delf make_mini_dataset` flags."""

    seed: int = 0
    num_landmarks: int = 10  # train landmarks
    views_per_landmark: int = 6
    num_noisy_images: int = 4  # in train.csv with a wrong label, left out of train_clean.csv
    num_index_landmarks: int = 6  # retrieval landmarks, disjoint from the train ones
    index_views_per_landmark: int = 4
    num_retrieval_queries: int = 8  # test views of index landmarks
    num_recognition_queries: int = 5  # test views of train landmarks
    num_distractors: int = 3  # test images of no landmark
    num_train_tars: int = 2
    num_index_tars: int = 1
    num_test_tars: int = 1
    min_image_size: int = _VIEW.min_size  # longest side of a view, pixels
    max_image_size: int = _VIEW.max_size
    min_region_fraction: float = 0.4  # landmark region side, as a fraction of the photo's
    max_region_fraction: float = 0.7
    max_region_overlap: float = 0.1  # IoU wanted between two landmarks of one photo
    max_corner_shift: float = _VIEW.max_corner_shift
    max_rotation_degrees: float = _VIEW.max_rotation_degrees
    max_zoom_change: float = _VIEW.max_zoom_change
    max_brightness_change: float = _VIEW.max_brightness_change
    max_contrast_change: float = _VIEW.max_contrast_change
    max_gamma_change: float = _VIEW.max_gamma_change
    min_jpeg_quality: int = _VIEW.min_jpeg_quality
    max_jpeg_quality: int = _VIEW.max_jpeg_quality

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
        self._at_least("seed", 0)
        self._at_least("num_landmarks", 1)
        self._at_least("views_per_landmark", 2, "so that every clean landmark can be matched")
        self._at_least("num_noisy_images", 1, "so that train_clean.csv leaves some images out")
        self._at_least("num_index_landmarks", 1)
        self._at_least("index_views_per_landmark", 1)
        for name in ("num_retrieval_queries", "num_recognition_queries", "num_distractors"):
            self._at_least(name, 0)
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
            flag, images = f"num_{split}_tars", self.num_images()[split]
            self._at_least(flag, 1)
            if tars > images:
                raise ValueError(
                    f"--{flag}={tars} is more than the {images} {split} images; "
                    f"every tar needs one, so use at most {images}"
                )
        self._at_least("min_image_size", 32)
        self._not_below("max_image_size", "min_image_size")
        self._between("min_region_fraction", 0.05, 1.0)
        self._between("max_region_fraction", 0.05, 1.0)
        self._not_below("max_region_fraction", "min_region_fraction")
        self._between("max_region_overlap", 0.0, 1.0)
        self._between("max_corner_shift", 0.0, 0.25, "beyond 0.25 a view can fold over")
        self._between("max_rotation_degrees", 0.0, 180.0)
        self._between("max_zoom_change", 0.0, 1.0)
        self._between("max_brightness_change", 0.0, 0.9)
        self._between("max_contrast_change", 0.0, 0.9)
        self._between("max_gamma_change", 0.0, 1.0)
        self._between("min_jpeg_quality", 1, 100)
        self._between("max_jpeg_quality", 1, 100)
        self._not_below("max_jpeg_quality", "min_jpeg_quality")

    def _at_least(self, name: str, low: int, why: str = "") -> None:
        value = getattr(self, name)
        if value < low:
            raise ValueError(f"--{name}={value} must be >= {low}" + (f" {why}" if why else ""))

    def _between(self, name: str, low: float, high: float, why: str = "") -> None:
        value = getattr(self, name)
        if not low <= value <= high:
            reason = f"; {why}" if why else ""
            raise ValueError(f"--{name}={value} must be between {low} and {high}{reason}")

    def _not_below(self, name: str, other: str) -> None:
        value, floor = getattr(self, name), getattr(self, other)
        if value < floor:
            raise ValueError(
                f"--{name}={value} is less than --{other}={floor}; raise one or lower the other"
            )
