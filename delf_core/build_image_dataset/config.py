"""The flags of build_image_dataset, with the original's defaults."""

from __future__ import annotations

import dataclasses

from delf_core.gldv2.images import DEFAULT_MAX_PIXELS, MAX_PIXELS_CEILING
from delf_core.step_config import check, option


@dataclasses.dataclass(frozen=True)
class BuildConfig:
    """What to build: the original's flags (REFERENCE §2), plus `strict`, `max_image_pixels`
    and `allow_empty`.

    Image folders may hold glob wildcards (`gldv2_dataset/train/*/*/*/`); their images
    are `<folder>/*.jpg`. With a clean CSV only its images are kept, relabeled 0..K-1.
    """

    train_directory: str = option(
        "/tmp/",
        "folder of train images (*.jpg); may hold wildcards, e.g. gldv2_dataset/train/*/*/*/",
        flow=False,
    )
    test_directory: str | None = option(
        None, "folder of test images; may hold wildcards", flow=False
    )
    output_directory: str = option(
        "/tmp/", "where the shards, relabeling.csv, the report and manifest go", flow=False
    )
    train_csv_path: str = option(
        "/tmp/train.csv",
        "train.csv (id,url,landmark_id); used when there is no clean CSV",
        flow=False,
    )
    train_clean_csv_path: str | None = option(
        None,
        "train_clean.csv (landmark_id,images): keep only these images, relabeled 0..K-1",
        flow=False,
    )
    test_csv_path: str | None = option(
        None,
        "when set, test shards are built from --test_directory (the file is not read)",
        flow=False,
    )
    num_shards: int = option(128, "shards per split", minimum=1)
    generate_train_validation_splits: bool = option(
        False, "split train per class into train and validation"
    )
    validation_split_size: float = option(
        0.2,
        "fraction of each class for validation (at least one image)",
        above=0,
        below=1,
    )
    seed: int = option(0, "seed of the split and of the record order")
    strict: bool = option(
        False, "fail on the first missing or unreadable image instead of reporting it"
    )
    max_image_pixels: int = option(
        DEFAULT_MAX_PIXELS,
        "images whose header claims more pixels (width x height) are left out undecoded "
        "and reported as too_large",
        minimum=1,
        maximum=MAX_PIXELS_CEILING,
    )
    allow_empty: bool = option(False, "build a split that has no image instead of refusing")

    def validate(self) -> None:
        """Raises ValueError naming the bad flag."""
        # The split size only matters when the split is made.
        check(self, skip=lambda o: o.name == "validation_split_size")
        if self.generate_train_validation_splits:
            check(self)
        if self.test_csv_path is not None and not self.test_directory:
            raise ValueError("--test_csv_path asks for test shards: set --test_directory too")

    def params(self) -> dict:
        """The parameters that shape the output (all but `strict` and `allow_empty`)."""
        values = dataclasses.asdict(self)
        values.pop("strict")
        values.pop("allow_empty")
        return values
