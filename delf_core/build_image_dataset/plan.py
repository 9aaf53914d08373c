"""Planning a build: each image's split, shard and position, before any pixel is read."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections import defaultdict
from collections.abc import Container
from typing import Any

from delf_core import records, storage
from delf_core.build_image_dataset.config import BuildConfig
from delf_core.gldv2 import images, labels
from delf_core.gldv2.split import order_key, split_class

# A listed train image with no row in train.csv (the original stopped with a KeyError).
UNLISTED = "unlisted"
# What makes a path a pattern, as fsspec's glob tells.
_MAGIC = re.compile(r"[*?\[]")
# Under the output folder: the shard plans and state of the build in progress.
WORK_FOLDER_NAME = ".build_image_dataset"


@dataclasses.dataclass(frozen=True, slots=True)
class PlannedImage:
    image_id: str
    path: str
    label: int | None  # None for test images


@dataclasses.dataclass(frozen=True)
class Problem:
    """An image left out of the records (or re-encoded), as one row of the report."""

    split: str
    image_id: str
    path: str
    problem: str
    detail: str = ""


@dataclasses.dataclass(frozen=True)
class ShardPlan:
    prefix: str
    index: int
    num_shards: int
    images: tuple[PlannedImage, ...]

    @property
    def name(self) -> str:
        return records.shard_name(self.prefix, self.index, self.num_shards)

    def to_json(self) -> str:
        # Not dataclasses.asdict: its deep copy costs seconds over 1.58M images.
        images = [{"image_id": i.image_id, "path": i.path, "label": i.label} for i in self.images]
        fields = {"prefix": self.prefix, "index": self.index, "num_shards": self.num_shards}
        return json.dumps({**fields, "images": images})

    @classmethod
    def from_json(cls, text: str) -> ShardPlan:
        data = json.loads(text)
        data["images"] = tuple(PlannedImage(**image) for image in data["images"])
        return cls(**data)


@dataclasses.dataclass
class BuildPlan:
    config: BuildConfig
    shards: list[ShardPlan]
    problems: list[Problem]
    relabeling: dict[int, int] | None
    fingerprint: str

    def counts(self) -> dict[str, int]:
        totals: dict[str, int] = defaultdict(int)
        for shard in self.shards:
            totals[shard.prefix] += len(shard.images)
        return dict(totals)

    def num_classes(self) -> int:
        """Classes of the relabeling (all of the clean CSV), else labels seen in the records."""
        if self.relabeling is not None:
            return len(self.relabeling)
        return len({i.label for s in self.shards for i in s.images if i.label is not None})

    def work_folder(self) -> str:
        """Where the shard plans live while the job runs, under the output folder."""
        return storage.join(self.config.output_directory, WORK_FOLDER_NAME, self.fingerprint[:16])

    def write(self) -> list[str]:
        """Writes one JSON file per shard under the output folder; returns their URLs."""
        fs, folder = storage.resolve(self.work_folder())
        paths = []
        for shard in self.shards:
            path = storage.join(folder, f"{shard.name}.json")
            storage.write_bytes(fs, path, shard.to_json().encode())
            paths.append(storage.url_of(fs, path))
        return paths


def list_images(directory: str) -> dict[str, tuple[str, int]]:
    """{image id: (path, size)} of `<directory>/*.jpg`; the directory may hold wildcards.

    An id found twice keeps its first path in sorted order. Only plain files count: a
    folder or a device named like an image is not one.
    """
    return scan_images(directory, None, hashlib.sha256()).files


@dataclasses.dataclass
class ImageListing:
    """What a scan of an image folder found.

    Attributes:
        files: {image id: (path, size)} of the images kept (all, or those wanted).
        listed: How many distinct image ids the folder holds.
        digest: The hashlib object fed every image's id and size.
    """

    files: dict[str, tuple[str, int]]
    listed: int
    digest: Any


def _folders(fs, pattern: str) -> list[str]:
    """The folders a directory pattern names, in the order their files' paths sort."""
    if not _MAGIC.search(pattern):
        return [pattern]
    found = fs.glob(pattern, detail=True)
    folders = [path for path, info in found.items() if info.get("type") == "directory"]
    # Sorting "<folder>/" keeps every file of a folder before the next folder's files.
    return sorted(folders, key=lambda folder: folder + "/")


def _images_in(fs, folder: str) -> list[tuple[str, str, int]]:
    """(image id, path, size) of each `*.jpg` plain file of one folder, sorted by id."""
    try:
        entries = fs.ls(folder, detail=True)
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = []
    for info in entries:
        path = info["name"]
        name = path.rsplit("/", 1)[-1]
        if name.endswith(".jpg") and info.get("type") == "file":
            found.append((name[: -len(".jpg")], path, int(info.get("size") or 0)))
    found.sort()  # ids are unique in a folder: no path or size is compared
    return found


def scan_images(directory: str, wanted: Container[str] | None, digest: Any) -> ImageListing:
    """Lists `<directory>/*.jpg` a folder at a time, keeping only the `wanted` ids' paths.

    GLDv2's train folder holds 4.1M images of which a clean build needs 1.58M: memory
    holds the wanted ones and one folder's listing, not the whole listing.

    Args:
        directory: A folder, or a pattern of folders (`gldv2_dataset/train/*/*/*`).
        wanted: Ids whose paths to keep; None keeps every image's.
        digest: A hashlib object to feed `<id>:<size>;` of every image (the first path
            of an id), in id order, as the build's fingerprint has always hashed them.

    Returns:
        The images kept, how many ids the folder holds, and the digest fed.
    """
    fs, pattern = storage.resolve(directory)
    pattern = pattern.rstrip("/")
    start = digest.copy()
    kept: dict[str, tuple[str, int]] = {}
    listed, last = 0, None
    for folder in _folders(fs, pattern):
        part = []
        for image_id, path, size in _images_in(fs, folder):
            if last is not None and image_id <= last:
                # Not the a/b/c/<id> layout, or an id found twice: hash in id order.
                return _scan_unordered(fs, pattern, wanted, start)
            last = image_id
            part.append(f"{image_id}:{size};")
            if wanted is None or image_id in wanted:
                kept[image_id] = (storage.url_of(fs, path), size)
        listed += len(part)
        digest.update("".join(part).encode())
    return ImageListing(kept, listed, digest)


def _scan_unordered(fs, pattern: str, wanted: Container[str] | None, digest: Any) -> ImageListing:
    """`scan_images` where ids do not follow the path order: the whole listing in memory."""
    found: dict[str, tuple[str, int]] = {}
    for folder in _folders(fs, pattern):
        for image_id, path, size in _images_in(fs, folder):
            found.setdefault(image_id, (path, size))
    digest.update("".join(f"{i}:{found[i][1]};" for i in sorted(found)).encode())
    kept = {
        image_id: (storage.url_of(fs, path), size)
        for image_id, (path, size) in found.items()
        if wanted is None or image_id in wanted
    }
    return ImageListing(kept, len(found), digest)


def plan_build(config: BuildConfig) -> BuildPlan:
    """Lists the images, joins them with the CSV, relabels, splits and shards.

    Raises:
      ValueError: naming the flag or CSV row that is wrong.
    """
    config.validate()
    clean = config.train_clean_csv_path is not None
    csv_path = config.train_clean_csv_path if clean else config.train_csv_path
    csv_labels = labels.read_clean_labels(csv_path) if clean else labels.read_train_labels(csv_path)
    mapping = labels.relabeling(csv_labels) if clean else None
    # A clean build keeps the paths of the clean images only; every image is hashed.
    train = scan_images(
        config.train_directory, csv_labels if clean else None, _digest(config, csv_path)
    )
    train_files, digest = train.files, train.digest
    digest.update(b"|")

    problems: list[Problem] = []
    by_class: dict[int, list[str]] = defaultdict(list)
    for image_id, label in csv_labels.items():
        if image_id in train_files:
            by_class[label].append(image_id)
        elif (
            clean
        ):  # train.csv lists every image, downloaded or not: only the clean list must exist
            problems.append(Problem("train", image_id, "", images.MISSING, f"listed in {csv_path}"))
    if not clean:
        for image_id, (path, _) in train_files.items():
            if image_id not in csv_labels:
                problems.append(Problem("train", image_id, path, UNLISTED, f"not in {csv_path}"))

    def planned(image_id: str, label: int) -> PlannedImage:
        return PlannedImage(image_id, train_files[image_id][0], mapping[label] if clean else label)

    splits: dict[str, list[PlannedImage]] = {records.TRAIN_PREFIX: []}
    if config.generate_train_validation_splits:
        splits[records.VALIDATION_PREFIX] = []
        for label in sorted(by_class):
            train_ids, validation_ids = split_class(
                by_class[label], label, config.seed, config.validation_split_size
            )
            splits[records.TRAIN_PREFIX] += [planned(i, label) for i in train_ids]
            splits[records.VALIDATION_PREFIX] += [planned(i, label) for i in validation_ids]
    else:
        for label, ids in by_class.items():
            splits[records.TRAIN_PREFIX] += [planned(i, label) for i in ids]
    if config.test_csv_path is not None:
        test = scan_images(config.test_directory, None, digest)
        digest = test.digest
        splits[records.TEST_PREFIX] = [PlannedImage(i, p, None) for i, (p, _) in test.files.items()]
    digest.update(b"|")

    if not config.allow_empty:
        _refuse_empty_splits(config, splits, csv_path, len(csv_labels))
    shards = [
        shard
        for prefix, members in splits.items()
        for shard in _shards(prefix, members, config.num_shards, config.seed)
    ]
    return BuildPlan(config, shards, problems, mapping, digest.hexdigest())


def build_fingerprint(config: BuildConfig) -> str:
    """`plan_build(config).fingerprint` without the plan: a listing, and no paths kept.

    Deciding whether an earlier build stands (a rerun) needs only this: at GLDv2's size
    it takes the listing's time and little memory, where a plan holds 1.58M images.
    """
    config.validate()
    clean = config.train_clean_csv_path is not None
    csv_path = config.train_clean_csv_path if clean else config.train_csv_path
    digest = scan_images(config.train_directory, frozenset(), _digest(config, csv_path)).digest
    digest.update(b"|")
    if config.test_csv_path is not None:
        digest = scan_images(config.test_directory, frozenset(), digest).digest
    digest.update(b"|")
    return digest.hexdigest()


def _refuse_empty_splits(
    config: BuildConfig, splits: dict[str, list[PlannedImage]], csv_path: str, listed: int
) -> None:
    """ValueError naming the input that leaves a split without images."""
    train_found = any(m for p, m in splits.items() if p != records.TEST_PREFIX)
    for prefix, members in splits.items():
        if members:
            continue
        if prefix == records.TEST_PREFIX:
            why = f"{config.test_directory}: no *.jpg image there"
        elif not listed:
            why = f"{csv_path}: lists no image"
        elif not train_found:
            why = f"{csv_path}: none of its {listed} images is in {config.train_directory}"
        else:  # every class has one image, and that one goes to validation
            why = f"{csv_path}: no class has two images found on disk"
        raise ValueError(
            f"{why}, so the {prefix} split would be empty (--allow_empty builds it anyway)"
        )


def _shards(prefix: str, members: list[PlannedImage], num_shards: int, seed: int):
    """Every shard of a split, empty ones included, cut from one pseudo-random order."""
    ordered = sorted(members, key=lambda image: order_key(seed, image.image_id))
    bounds = records.shard_boundaries(len(ordered), num_shards)
    for index in range(num_shards):
        yield ShardPlan(
            prefix, index, num_shards, tuple(ordered[bounds[index] : bounds[index + 1]])
        )


def _digest(config: BuildConfig, csv_path: str) -> Any:
    """The fingerprint's start: parameters and CSV bytes; the images' ids and sizes follow.

    The fingerprint is what the output depends on: parameters, CSV bytes and every
    image's id and size (from the listing: no image is read).
    """
    digest = hashlib.sha256(json.dumps(config.params(), sort_keys=True).encode())
    fs, path = storage.resolve(csv_path)
    with fs.open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest
