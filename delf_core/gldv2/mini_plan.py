"""What each mini-dataset image shows: landmarks, regions, ids, labels and the CSV rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from delf_core.gldv2 import layout, views
from delf_core.gldv2.mini_config import NUM_LANDMARK_IDS, MiniDatasetConfig

# `.invalid` is reserved (RFC 2606): these URLs look like GLDv2's but can never resolve.
URL_PREFIX = "https://mini.gldv2.invalid"
PUBLIC, PRIVATE, IGNORED = "Public", "Private", "Ignored"
# Image roles.
VIEW, NOISY = "view", "noisy"
RETRIEVAL_QUERY, RECOGNITION_QUERY, DISTRACTOR = (
    "retrieval_query",
    "recognition_query",
    "distractor",
)
# At most this many candidate regions are drawn per landmark while looking for one that
# overlaps its photo's other landmarks little; past it the least overlapping one is kept.
_REGION_TRIES = 50


@dataclasses.dataclass(frozen=True)
class Landmark:
    landmark_id: int
    photo: views.SourcePhoto
    region: views.Box


@dataclasses.dataclass(frozen=True)
class PlannedImage:
    image_id: str
    split: str
    role: str  # VIEW | NOISY | RETRIEVAL_QUERY | RECOGNITION_QUERY | DISTRACTOR
    photo: views.SourcePhoto
    region: views.Box
    seed: int  # seeds this image's own generator, so images render in any order
    landmark: Landmark | None  # what the image really shows
    label: int | None = None  # train: the landmark id train.csv gives it (wrong if noisy)
    usage: str = IGNORED  # test: the ground-truth Usage


@dataclasses.dataclass(frozen=True)
class Plan:
    train: list[Landmark]
    index: list[Landmark]
    images: list[PlannedImage]

    def split_images(self, split: str) -> list[PlannedImage]:
        """The split's images in id order: the order of the CSVs and of tar assignment."""
        return sorted((im for im in self.images if im.split == split), key=lambda im: im.image_id)


def _iou(a: views.Box, b: views.Box) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = w * h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def _region(
    rng: np.random.Generator,
    photo: views.SourcePhoto,
    taken: Sequence[views.Box],
    config: MiniDatasetConfig,
) -> views.Box:
    """A region of `photo` that overlaps its `taken` ones as little as the draws allow.

    Two landmarks cut from one photo must not look alike, or retrieval ground truth
    would call true matches wrong.
    """
    image = views.load_photo(photo)
    lo, hi = config.min_region_fraction, config.max_region_fraction
    best, best_overlap = None, 2.0
    for _ in range(_REGION_TRIES):
        box = views.sample_region(rng, image.width, image.height, lo, hi)
        overlap = max((_iou(box, other) for other in taken), default=0.0)
        if overlap < best_overlap:
            best, best_overlap = box, overlap
        if best_overlap <= config.max_region_overlap:
            break
    assert best is not None
    return best


def make_plan(config: MiniDatasetConfig) -> Plan:
    """Draws every landmark, region, image id and per-image seed, in one fixed order."""
    rng = np.random.default_rng(config.seed)
    num_train, num_index = config.num_landmarks, config.num_index_landmarks
    landmark_ids = rng.choice(NUM_LANDMARK_IDS, size=num_train + num_index, replace=False)
    photo_order = rng.permutation(len(views.LANDMARK_PHOTOS))
    regions: dict[str, list[views.Box]] = {}
    landmarks = []
    # Index landmarks take photos first, so that (up to the number of photos) no two of
    # them share one and the retrieval ground truth has no near-duplicate landmarks.
    for k in range(num_train + num_index):
        photo = views.LANDMARK_PHOTOS[photo_order[k % len(photo_order)]]
        taken = regions.setdefault(photo.name, [])
        taken.append(_region(rng, photo, taken, config))
        landmarks.append(Landmark(int(landmark_ids[k]), photo, taken[-1]))
    index, train = landmarks[:num_index], landmarks[num_index:]

    images: list[PlannedImage] = []
    used_ids: set[str] = set()

    def add(split: str, role: str, photo: views.SourcePhoto, region: views.Box, **kw: Any):
        image_id = rng.bytes(8).hex()
        while image_id in used_ids:
            image_id = rng.bytes(8).hex()
        used_ids.add(image_id)
        seed = int(rng.integers(2**63))
        images.append(PlannedImage(image_id, split, role, photo, region, seed, **kw))

    def clutter() -> tuple[views.SourcePhoto, views.Box]:
        photo = views.CLUTTER_PHOTOS[int(rng.integers(len(views.CLUTTER_PHOTOS)))]
        image = views.load_photo(photo)
        lo, hi = config.min_region_fraction, config.max_region_fraction
        return photo, views.sample_region(rng, image.width, image.height, lo, hi)

    for lm in train:
        for _ in range(config.views_per_landmark):
            add(layout.TRAIN, VIEW, lm.photo, lm.region, landmark=lm, label=lm.landmark_id)
    for i in range(config.num_noisy_images):
        label = train[int(rng.integers(num_train))].landmark_id
        others = [lm for lm in train if lm.landmark_id != label]
        # GLDv2's noise is of both kinds: another landmark's photo under this label, and
        # photos of no landmark at all (interiors, objects, textures).
        if i % 2 == 0 and others:
            other = others[int(rng.integers(len(others)))]
            add(layout.TRAIN, NOISY, other.photo, other.region, landmark=other, label=label)
        else:
            add(layout.TRAIN, NOISY, *clutter(), landmark=None, label=label)
    for lm in index:
        for _ in range(config.index_views_per_landmark):
            add(layout.INDEX, VIEW, lm.photo, lm.region, landmark=lm)
    usages = (PUBLIC, PRIVATE)
    for i in range(config.num_retrieval_queries):
        lm = index[i % len(index)]
        add(layout.TEST, RETRIEVAL_QUERY, lm.photo, lm.region, landmark=lm, usage=usages[i % 2])
    for i in range(config.num_recognition_queries):
        lm = train[i % num_train]
        add(layout.TEST, RECOGNITION_QUERY, lm.photo, lm.region, landmark=lm, usage=usages[i % 2])
    for _ in range(config.num_distractors):
        add(layout.TEST, DISTRACTOR, *clutter(), landmark=None)
    return Plan(train, index, images)


@dataclasses.dataclass(frozen=True)
class CsvTable:
    bucket_path: str  # e.g. "metadata/train.csv"
    columns: Sequence[str]
    rows: list[tuple[Any, ...]]


def _table(split: str, name: str, columns: Sequence[str], rows: list[tuple[Any, ...]]) -> CsvTable:
    # The path comes from the layout's list of the split's files, so it is spelled once.
    (path,) = [f.bucket_path for f in layout.METADATA_FILES[split] if f.name == name]
    return CsvTable(path, columns, rows)


def csv_tables(plan: Plan) -> list[CsvTable]:
    """Every CSV of the bucket, with rows sorted by image id or landmark id."""
    train_images = plan.split_images(layout.TRAIN)
    index_images = plan.split_images(layout.INDEX)
    test_images = plan.split_images(layout.TEST)
    train_landmarks = sorted(plan.train, key=lambda lm: lm.landmark_id)
    index_landmarks = sorted(plan.index, key=lambda lm: lm.landmark_id)

    def ids_of(split_images: list[PlannedImage], lm: Landmark | None) -> str:
        return " ".join(im.image_id for im in split_images if im.landmark == lm and im.role == VIEW)

    def url(im: PlannedImage) -> str:
        return f"{URL_PREFIX}/{im.photo.name}/{im.image_id}.jpg"

    def title(im: PlannedImage) -> str:
        left, top, right, bottom = (round(v) for v in im.region)
        return f"{im.photo.title}, view of region ({left}, {top})-({right}, {bottom})"

    def category(lm: Landmark) -> str:
        return f"{URL_PREFIX}/category/{lm.photo.name}/{lm.landmark_id}"

    def solution(im: PlannedImage, role: str, answer: str) -> tuple[str, str, str]:
        # Every test id gets a row; only the queries of this task are scored.
        return (im.image_id, answer, im.usage) if im.role == role else (im.image_id, "", IGNORED)

    train_rows = [(im.image_id, url(im), im.label) for im in train_images]
    attribution_rows = [
        (im.image_id, url(im), im.photo.author, im.photo.license, title(im)) for im in train_images
    ]
    recognition_rows = [
        solution(im, RECOGNITION_QUERY, str(im.landmark.landmark_id) if im.landmark else "")
        for im in test_images
    ]
    retrieval_rows = [
        solution(im, RETRIEVAL_QUERY, ids_of(index_images, im.landmark)) for im in test_images
    ]
    t, i, s = layout.TRAIN, layout.INDEX, layout.TEST
    return [
        _table(t, "train.csv", layout.TRAIN_CSV_COLUMNS, train_rows),
        _table(
            t,
            "train_clean.csv",
            layout.TRAIN_CLEAN_CSV_COLUMNS,
            [(lm.landmark_id, ids_of(train_images, lm)) for lm in train_landmarks],
        ),
        _table(t, "train_attribution.csv", layout.TRAIN_ATTRIBUTION_CSV_COLUMNS, attribution_rows),
        _table(
            t,
            "train_label_to_category.csv",
            layout.LABEL_TO_CATEGORY_CSV_COLUMNS,
            [(lm.landmark_id, category(lm)) for lm in train_landmarks],
        ),
        _table(i, "index.csv", layout.INDEX_CSV_COLUMNS, [(im.image_id,) for im in index_images]),
        _table(
            i,
            "index_image_to_landmark.csv",
            layout.INDEX_IMAGE_TO_LANDMARK_CSV_COLUMNS,
            [(im.image_id, im.landmark.landmark_id) for im in index_images if im.landmark],
        ),
        _table(
            i,
            "index_label_to_category.csv",
            layout.LABEL_TO_CATEGORY_CSV_COLUMNS,
            [(lm.landmark_id, category(lm)) for lm in index_landmarks],
        ),
        _table(s, "test.csv", layout.TEST_CSV_COLUMNS, [(im.image_id,) for im in test_images]),
        _table(
            s,
            layout.RECOGNITION_SOLUTION_NAME,
            layout.RECOGNITION_SOLUTION_CSV_COLUMNS,
            recognition_rows,
        ),
        _table(
            s, layout.RETRIEVAL_SOLUTION_NAME, layout.RETRIEVAL_SOLUTION_CSV_COLUMNS, retrieval_rows
        ),
    ]
