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
from delf_core.gldv2.mini_config import MiniDatasetConfig

logger = logging.getLogger(__name__)

MANIFEST_NAME = "mini_dataset.json"
FORMAT_VERSION = 1
SPLITS = (layout.TRAIN, layout.INDEX, layout.TEST)


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
