"""The GLDv2 bucket and download layout: split names, URL scheme and file names, in one place."""

from __future__ import annotations

import csv
import dataclasses
import re

DEFAULT_BASE_URL = "https://s3.amazonaws.com/google-landmark"
# Where `delf download` puts the dataset, and where the commands that read it look.
DEFAULT_DATASET_DIR = "gldv2_dataset"

TRAIN, INDEX, TEST = "train", "index", "test"
# The original script fetches the splits in this order.
SPLITS = (TRAIN, TEST, INDEX)
# How many tars each split has in the public bucket.
MAX_TARS = {TRAIN: 500, INDEX: 100, TEST: 20}


# CSV headers, as in the public files.
TRAIN_CSV_COLUMNS = ("id", "url", "landmark_id")
TRAIN_CLEAN_CSV_COLUMNS = ("landmark_id", "images")
TRAIN_ATTRIBUTION_CSV_COLUMNS = ("id", "url", "author", "license", "title")
LABEL_TO_CATEGORY_CSV_COLUMNS = ("landmark_id", "category")
INDEX_CSV_COLUMNS = ("id",)
INDEX_IMAGE_TO_LANDMARK_CSV_COLUMNS = ("id", "landmark_id")
TEST_CSV_COLUMNS = ("id",)
RECOGNITION_SOLUTION_CSV_COLUMNS = ("id", "landmarks", "Usage")
RETRIEVAL_SOLUTION_CSV_COLUMNS = ("id", "images", "Usage")
# A train_clean.csv row lists every image of a landmark in one field, which can pass the
# csv module's default limit of 128 KiB.
_CSV_FIELD_LIMIT = 2**31 - 1


def allow_long_csv_fields() -> None:
    """Lets the csv module read fields as long as GLDv2's (raising a limit only allows more)."""
    if csv.field_size_limit() < _CSV_FIELD_LIMIT:
        csv.field_size_limit(_CSV_FIELD_LIMIT)


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One CSV the download step fetches into a split folder, and the header it must have."""

    bucket_path: str  # relative to the base URL, e.g. "metadata/train.csv"
    columns: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.bucket_path.rsplit("/", 1)[-1]


RETRIEVAL_SOLUTION_NAME = "retrieval_solution_v2.1.csv"
RECOGNITION_SOLUTION_NAME = "recognition_solution_v2.1.csv"

METADATA_FILES: dict[str, tuple[RemoteFile, ...]] = {
    TRAIN: (
        RemoteFile("metadata/train.csv", TRAIN_CSV_COLUMNS),
        RemoteFile("metadata/train_clean.csv", TRAIN_CLEAN_CSV_COLUMNS),
        RemoteFile("metadata/train_attribution.csv", TRAIN_ATTRIBUTION_CSV_COLUMNS),
        RemoteFile("metadata/train_label_to_category.csv", LABEL_TO_CATEGORY_CSV_COLUMNS),
    ),
    INDEX: (
        RemoteFile("metadata/index.csv", INDEX_CSV_COLUMNS),
        RemoteFile("metadata/index_image_to_landmark.csv", INDEX_IMAGE_TO_LANDMARK_CSV_COLUMNS),
        RemoteFile("metadata/index_label_to_category.csv", LABEL_TO_CATEGORY_CSV_COLUMNS),
    ),
    TEST: (
        RemoteFile("metadata/test.csv", TEST_CSV_COLUMNS),
        RemoteFile(f"ground_truth/{RECOGNITION_SOLUTION_NAME}", RECOGNITION_SOLUTION_CSV_COLUMNS),
        RemoteFile(f"ground_truth/{RETRIEVAL_SOLUTION_NAME}", RETRIEVAL_SOLUTION_CSV_COLUMNS),
    ),
}

IMAGE_ID_LENGTH = 16
# An image inside a split, as the tars hold it: `a/b/c/abc0123456789def.jpg`, the three
# folders being the first three characters of a 16-hex-char id.
IMAGE_RELPATH = re.compile(
    rf"([0-9a-f])/([0-9a-f])/([0-9a-f])/\1\2\3[0-9a-f]{{{IMAGE_ID_LENGTH - 3}}}\.jpg"
)


def tar_name(index: int) -> str:
    """`images_007.tar` for index 7 (the script's `printf "%03g"`)."""
    return f"images_{index:03d}.tar"


def md5_name(index: int) -> str:
    """`md5.images_007.txt`: the md5sum file of one tar."""
    return f"md5.images_{index:03d}.txt"


def tar_bucket_path(split: str, index: int) -> str:
    return f"{split}/{tar_name(index)}"


def md5_bucket_path(split: str, index: int) -> str:
    return f"md5sum/{split}/{md5_name(index)}"


def join_url(base_url: str, bucket_path: str) -> str:
    return f"{base_url.rstrip('/')}/{bucket_path}"


def image_relpath(image_id: str, extension: str = ".jpg") -> str:
    """Where an image sits inside a split: `a/b/c/abc0123456789def.jpg`."""
    if len(image_id) < 3:
        raise ValueError(f"image id {image_id!r} is too short for the a/b/c/ layout")
    return f"{image_id[0]}/{image_id[1]}/{image_id[2]}/{image_id}{extension}"


def is_image_relpath(relpath: str) -> bool:
    """Whether `relpath` is where an image of a split sits (see `IMAGE_RELPATH`)."""
    return IMAGE_RELPATH.fullmatch(relpath) is not None


def parse_md5_file(text: str, source: str) -> str:
    """The hex digest from an md5sum line such as `<hex>  images_000.tar`.

    Raises:
      ValueError: naming `source` when the text holds no 32-hex-char digest.
    """
    fields = text.split()
    digest = fields[0].lower() if fields else ""
    if len(digest) != 32 or any(c not in "0123456789abcdef" for c in digest):
        raise ValueError(f"{source}: not an md5sum line (got {text[:60]!r})")
    return digest


def md5_line(digest: str, filename: str) -> str:
    """The md5sum format the bucket uses: digest, two spaces, file name."""
    return f"{digest}  {filename}\n"
