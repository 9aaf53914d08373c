"""The mini GLDv2 dataset: synthetic views of bundled photos, in the public bucket's layout."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import logging
import tarfile
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import PIL

from delf_core import __version__, storage
from delf_core.gldv2 import layout, mini_plan, views

logger = logging.getLogger(__name__)

MANIFEST_NAME = "mini_dataset.json"
FORMAT_VERSION = 1
SPLITS = (layout.TRAIN, layout.INDEX, layout.TEST)

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
        if self.num_landmarks + self.num_index_landmarks > mini_plan.NUM_LANDMARK_IDS:
            raise ValueError(
                f"--num_landmarks plus --num_index_landmarks exceed the "
                f"{mini_plan.NUM_LANDMARK_IDS} GLDv2 landmark ids; lower them"
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


@dataclasses.dataclass(frozen=True)
class MiniDatasetSummary:
    """What `make_mini_dataset` wrote, or found already written."""

    output_dir: str
    images: dict[str, int]  # per split
    landmarks: dict[str, int]  # train and index
    tars: dict[str, tuple[str, ...]]  # tar names per split
    total_bytes: int  # every file but the manifest
    skipped: bool = False  # True when a complete dataset of this config was already there

    @property
    def num_images(self) -> int:
        return sum(self.images.values())


def tar_bytes(members: Iterable[tuple[str, bytes]]) -> bytes:
    """A GNU tar of regular files, sorted, owned by 0:0, mode 0644, mtime 0: stable bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode, info.type = len(data), 0, 0o644, tarfile.REGTYPE
            info.uid, info.gid, info.uname, info.gname = 0, 0, "", ""
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _csv_bytes(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows(rows)
    return text.getvalue().encode("utf-8")


def _is_complete(fs: Any, root: str, manifest: Any, config: MiniDatasetConfig) -> bool:
    """True when `manifest` records this config and every file it lists is there, whole."""
    if not isinstance(manifest, dict) or manifest.get("version") != FORMAT_VERSION:
        return False
    if manifest.get("config") != dataclasses.asdict(config):
        return False
    for relpath, info in manifest.get("files", {}).items():
        try:
            if fs.size(storage.join(root, relpath)) != info["bytes"]:
                return False
        except FileNotFoundError:
            return False
    return True


def mini_dataset_stands(config: MiniDatasetConfig, output_dir: str) -> bool:
    """Whether `output_dir` holds the complete mini dataset of `config`."""
    fs, root = storage.resolve(output_dir)
    manifest = storage.read_json(fs, storage.join(root, MANIFEST_NAME))
    return _is_complete(fs, root, manifest, config)


def _summary(output_dir: str, manifest: dict[str, Any], skipped: bool) -> MiniDatasetSummary:
    counts = manifest["counts"]
    return MiniDatasetSummary(
        output_dir=output_dir,
        images={split: counts[split]["images"] for split in SPLITS},
        landmarks={split: counts[split]["landmarks"] for split in (layout.TRAIN, layout.INDEX)},
        tars={split: tuple(manifest["tars"][split]) for split in SPLITS},
        total_bytes=manifest["total_bytes"],
        skipped=skipped,
    )


def _counts(config: MiniDatasetConfig) -> dict[str, dict[str, int]]:
    num_images = config.num_images()
    return {
        layout.TRAIN: {
            "images": num_images[layout.TRAIN],
            "landmarks": config.num_landmarks,
            "clean_images": config.num_landmarks * config.views_per_landmark,
            "noisy_images": config.num_noisy_images,
            "tars": config.num_train_tars,
        },
        layout.INDEX: {
            "images": num_images[layout.INDEX],
            "landmarks": config.num_index_landmarks,
            "tars": config.num_index_tars,
        },
        layout.TEST: {
            "images": num_images[layout.TEST],
            "retrieval_queries": config.num_retrieval_queries,
            "recognition_queries": config.num_recognition_queries,
            "distractors": config.num_distractors,
            "tars": config.num_test_tars,
        },
    }


def _sources(plan: mini_plan.Plan) -> list[dict[str, Any]]:
    """Attribution of every photo the dataset uses, with what was cut from it."""
    photos = views.LANDMARK_PHOTOS + views.CLUTTER_PHOTOS
    out = []
    for photo in photos:
        images = [im for im in plan.images if im.photo == photo]
        if not images:
            continue
        entry = {
            k: v for k, v in dataclasses.asdict(photo).items() if k not in ("package", "relpath")
        }
        entry["file"] = f"{photo.package}/{photo.relpath}"
        entry["train_landmarks"] = sorted(lm.landmark_id for lm in plan.train if lm.photo == photo)
        entry["index_landmarks"] = sorted(lm.landmark_id for lm in plan.index if lm.photo == photo)
        entry["images"] = len(images)
        out.append(entry)
    return out


def make_mini_dataset(config: MiniDatasetConfig, output_dir: str) -> MiniDatasetSummary:
    """Writes the mini dataset under `output_dir` in the GLDv2 bucket layout.

    The same config gives byte-identical files. When `output_dir` already holds a
    complete dataset of this config (its manifest lists every file at its size), nothing
    is written.

    Args:
      config: the dataset's knobs; validated first, so a bad one writes nothing.
      output_dir: a local path or any fsspec URL (gs://, memory://).

    Returns:
      Counts per split, tar names and bytes written.

    Raises:
      ValueError: naming the bad flag when `config` is invalid.
    """
    config.validate()
    fs, root = storage.resolve(output_dir)
    manifest_path = storage.join(root, MANIFEST_NAME)
    previous = storage.read_json(fs, manifest_path)
    if _is_complete(fs, root, previous, config):
        logger.info("%s already holds this mini dataset; nothing to do", output_dir)
        return _summary(output_dir, previous, skipped=True)
    if previous is not None:
        # The folder is about to change: it must not look complete if we stop half way.
        fs.rm(manifest_path)

    plan = mini_plan.make_plan(config)
    view_config = config.view_config()
    files: dict[str, dict[str, Any]] = {}

    def put(relpath: str, data: bytes) -> str:
        digest = hashlib.md5(data).hexdigest()
        storage.write_bytes(fs, storage.join(root, relpath), data)
        files[relpath] = {"bytes": len(data), "md5": digest}
        return digest

    def render(image: mini_plan.PlannedImage) -> bytes:
        rng = np.random.default_rng(image.seed)
        return views.make_view(views.load_photo(image.photo), image.region, rng, view_config)

    tars: dict[str, list[str]] = {}
    for split in SPLITS:
        images = plan.split_images(split)
        num_tars = config.num_tars()[split]
        tars[split] = [layout.tar_name(t) for t in range(num_tars)]
        for t in range(num_tars):
            # Round-robin over ids in sorted order, as the bucket spreads images over tars.
            members = [
                (layout.image_relpath(im.image_id), render(im)) for im in images[t::num_tars]
            ]
            data = tar_bytes(members)
            digest = put(layout.tar_bucket_path(split, t), data)
            put(
                layout.md5_bucket_path(split, t),
                layout.md5_line(digest, layout.tar_name(t)).encode(),
            )
            logger.info(
                "wrote %s (%d images, %.2f MB)",
                layout.tar_bucket_path(split, t),
                len(members),
                len(data) / 1e6,
            )
    for table in mini_plan.csv_tables(plan):
        put(table.bucket_path, _csv_bytes(table.columns, table.rows))

    manifest = {
        "format": "gldv2-mini",
        "version": FORMAT_VERSION,
        "config": dataclasses.asdict(config),
        "seed": config.seed,
        "counts": _counts(config),
        "tars": tars,
        "files": files,
        "total_bytes": sum(info["bytes"] for info in files.values()),
        "sources": _sources(plan),
        "versions": {"delf_core": __version__, "numpy": np.__version__, "pillow": PIL.__version__},
    }
    # Written last: its presence says the folder is complete (DESIGN.md rule 5).
    storage.write_json(fs, manifest_path, manifest)
    return _summary(output_dir, manifest, skipped=False)
