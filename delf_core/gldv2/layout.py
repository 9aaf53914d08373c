"""The GLDv2 bucket and download layout: split names, URL scheme and file names, in one place."""

from __future__ import annotations

import dataclasses

DEFAULT_BASE_URL = "https://s3.amazonaws.com/google-landmark"

TRAIN, INDEX, TEST = "train", "index", "test"
# The original script fetches the splits in this order.
SPLITS = (TRAIN, TEST, INDEX)
# How many tars each split has in the public bucket.
MAX_TARS = {TRAIN: 500, INDEX: 100, TEST: 20}


@dataclasses.dataclass(frozen=True)
class RemoteFile:
    """One CSV the download step fetches into a split folder."""

    bucket_path: str  # relative to the base URL, e.g. "metadata/train.csv"

    @property
    def name(self) -> str:
        return self.bucket_path.rsplit("/", 1)[-1]


RETRIEVAL_SOLUTION_NAME = "retrieval_solution_v2.1.csv"
RECOGNITION_SOLUTION_NAME = "recognition_solution_v2.1.csv"

METADATA_FILES: dict[str, tuple[RemoteFile, ...]] = {
    TRAIN: (
        RemoteFile("metadata/train.csv"),
        RemoteFile("metadata/train_clean.csv"),
        RemoteFile("metadata/train_attribution.csv"),
        RemoteFile("metadata/train_label_to_category.csv"),
    ),
    INDEX: (
        RemoteFile("metadata/index.csv"),
        RemoteFile("metadata/index_image_to_landmark.csv"),
        RemoteFile("metadata/index_label_to_category.csv"),
    ),
    TEST: (
        RemoteFile("metadata/test.csv"),
        RemoteFile(f"ground_truth/{RECOGNITION_SOLUTION_NAME}"),
        RemoteFile(f"ground_truth/{RETRIEVAL_SOLUTION_NAME}"),
    ),
}

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

IMAGE_ID_LENGTH = 16


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
