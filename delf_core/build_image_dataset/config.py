"""The flags of build_image_dataset, with the original's defaults."""

from __future__ import annotations

import dataclasses

from delf_core.gldv2.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build (REFERENCE §2 flags, plus `strict`, `max_image_pixels`, `allow_empty`).

    Attributes:
      train_directory: folder of train JPEGs; may hold glob wildcards
        (`gldv2_dataset/train/*/*/*/`); images are `<folder>/*.jpg`.
      test_directory: the same for test images.
      output_directory: where shards, relabeling.csv, the report and manifest go.
      train_csv_path: `id,url,landmark_id`; used when there is no clean CSV.
      train_clean_csv_path: `landmark_id,images`; if set, only these images, relabeled.
      test_csv_path: if set, test shards are built (the file itself is not read).
      num_shards: shards per split.
      generate_train_validation_splits: split train per class into train/validation.
      validation_split_size: fraction of each class for validation, in (0, 1).
      seed: seed of the split and of the record order.
      strict: fail on the first missing or unreadable image instead of reporting it.
      max_image_pixels: an image whose header claims more pixels (width x height) is
        left out unread and reported as too_large.
      allow_empty: build a split that has no image instead of refusing.
    """

    train_directory: str = "/tmp/"
    test_directory: str | None = None
    output_directory: str = "/tmp/"
    train_csv_path: str = "/tmp/train.csv"
    train_clean_csv_path: str | None = None
    test_csv_path: str | None = None
    num_shards: int = 128
    generate_train_validation_splits: bool = False
    validation_split_size: float = 0.2
    seed: int = 0
    strict: bool = False
    max_image_pixels: int = DEFAULT_MAX_PIXELS
    allow_empty: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the bad flag."""
        if self.num_shards < 1:
            raise ValueError(f"--num_shards={self.num_shards}: must be at least 1")
        if self.generate_train_validation_splits and not 0 < self.validation_split_size < 1:
            raise ValueError(
                f"--validation_split_size={self.validation_split_size}: must be strictly "
                "between 0 and 1 with --generate_train_validation_splits"
            )
        if not 1 <= self.max_image_pixels <= MAX_PIXELS_CEILING:
            raise ValueError(
                f"--max_image_pixels={self.max_image_pixels}: must be between 1 and "
                f"{MAX_PIXELS_CEILING} (the most PIL opens)"
            )
        if self.test_csv_path is not None and not self.test_directory:
            raise ValueError("--test_csv_path asks for test shards: set --test_directory too")

    def params(self) -> dict:
        """The parameters that shape the output (all but `strict` and `allow_empty`)."""
        values = dataclasses.asdict(self)
        values.pop("strict")
        values.pop("allow_empty")
        return values
