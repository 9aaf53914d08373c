"""Benchmark of the build_image_dataset job on local JPEGs, against a raw copy and a plain loop."""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from beam_jobs.build_image_dataset import run_build
from delf_core import records
from delf_core.build_image_dataset import BuildConfig, plan_build
from delf_core.gldv2 import layout
from delf_core.gldv2.views import LANDMARK_PHOTOS, load_photo

MB = 1e6
IMAGE_SIZE = (1024, 768)
# Bases are this much larger than an image, so each image is a different crop of one.
_MARGIN = (128, 96)
# Sensor-like noise: upscaled library photos are too smooth to reach camera file sizes.
_NOISE_SIGMA = 6.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_images", type=int, default=3000)
    parser.add_argument("--image_kb", type=int, default=300, help="target size of each JPEG")
    parser.add_argument("--num_classes", type=int, default=100)
    parser.add_argument("--num_shards", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2, help="--direct_num_workers")
    parser.add_argument(
        "--running_mode",
        default="multi_threading",
        choices=["in_memory", "multi_threading", "multi_processing"],
        help="--direct_running_mode (threads: the job's local default)",
    )
    parser.add_argument("--workdir", default=None, help="where to make the run's folder")
    parser.add_argument("--keep", action="store_true", help="leave the run's folder in place")
    return parser.parse_args(argv)


def encode(image: Image.Image, quality: int) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def make_bases(rng: np.random.Generator, image_kb: int) -> list[tuple[Image.Image, int]]:
    """Each landmark photo, enlarged with noise, and the JPEG quality that gives ~image_kb."""
    size = (IMAGE_SIZE[0] + _MARGIN[0], IMAGE_SIZE[1] + _MARGIN[1])
    bases = []
    for photo in LANDMARK_PHOTOS:
        pixels = np.asarray(load_photo(photo).resize(size, Image.Resampling.BICUBIC), np.float32)
        pixels = pixels + rng.normal(0.0, _NOISE_SIGMA, pixels.shape)
        base = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
        sample = base.crop((0, 0, *IMAGE_SIZE))
        # Smallest quality that reaches the target: size grows with quality.
        low, high = 50, 98
        while low < high:
            middle = (low + high) // 2
            if len(encode(sample, middle)) < image_kb * 1024:
                low = middle + 1
            else:
                high = middle
        bases.append((base, low))
    return bases


def vary(base: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A different crop, a little brighter or darker: distinct bytes, similar size."""
    left = int(rng.integers(0, _MARGIN[0] + 1))
    top = int(rng.integers(0, _MARGIN[1] + 1))
    crop = base.crop((left, top, left + IMAGE_SIZE[0], top + IMAGE_SIZE[1]))
    gain = rng.uniform(0.9, 1.1)
    return crop.point(lambda value: min(255, int(value * gain)))


def make_train(root: Path, args: argparse.Namespace) -> tuple[dict[str, Path], Path]:
    """`train/a/b/c/<id>.jpg` and a train_clean.csv over sparse landmark ids."""
    rng = np.random.default_rng(0)
    bases = make_bases(rng, args.image_kb)
    paths: dict[str, Path] = {}
    while len(paths) < args.num_images:
        image_id = rng.bytes(8).hex()
        if image_id in paths:
            continue
        base, quality = bases[len(paths) % len(bases)]
        path = root / "train" / layout.image_relpath(image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(encode(vary(base, rng), quality))
        paths[image_id] = path
    landmarks = np.sort(rng.choice(200_000, size=args.num_classes, replace=False))
    assigned = rng.permutation(np.arange(args.num_images) % args.num_classes)
    members: dict[int, list[str]] = {int(landmark): [] for landmark in landmarks}
    for image_id, index in zip(paths, assigned, strict=True):
        members[int(landmarks[index])].append(image_id)
    clean_csv = root / "train_clean.csv"
    rows = [f"{landmark},{' '.join(ids)}" for landmark, ids in members.items()]
    clean_csv.write_text("landmark_id,images\n" + "\n".join(rows) + "\n")
    return paths, clean_csv


def clean_order(clean_csv: Path) -> list[tuple[str, int]]:
    """(image id, landmark id) in the clean CSV's order, as the original walks it."""
    listed = []
    for line in clean_csv.read_text().splitlines()[1:]:
        landmark, ids = line.split(",")
        listed += [(image_id, int(landmark)) for image_id in ids.split()]
    return listed


def raw_copy(paths: list[Path], out: Path) -> float:
    """Seconds to read every image and write its bytes once, into one file."""
    began = time.perf_counter()
    with open(out, "wb") as handle:
        for path in paths:
            handle.write(path.read_bytes())
    return time.perf_counter() - began


def single_process_loop(
    listed: list[tuple[str, int]], paths: dict[str, Path], out: Path, num_shards: int
) -> float:
    """Seconds of the original's way: decode check, Example, shards written in order."""
    import tensorflow as tf

    relabel = {old: new for new, old in enumerate(sorted({label for _, label in listed}))}
    bounds = records.shard_boundaries(len(listed), num_shards)
    out.mkdir(parents=True)
    began = time.perf_counter()
    for shard in range(num_shards):
        name = out / records.shard_name(records.TRAIN_PREFIX, shard, num_shards)
        with tf.io.TFRecordWriter(str(name)) as writer:
            for image_id, label in listed[bounds[shard] : bounds[shard + 1]]:
                data = paths[image_id].read_bytes()
                height, width, _ = tf.io.decode_jpeg(data, channels=3).shape
                writer.write(records.make_example(image_id, data, height, width, relabel[label]))
    return time.perf_counter() - began


def run_job(config: BuildConfig, workers: int, mode: str, images: int) -> float:
    """Wall seconds of run_build; exits when a count is off or a problem is reported."""
    pipeline_args = [f"--direct_num_workers={workers}", f"--direct_running_mode={mode}"]
    began = time.perf_counter()
    manifest = run_build(config, pipeline_args)
    elapsed = time.perf_counter() - began
    written = sum(split["records"] for split in manifest["splits"].values())
    if written != images:
        sys.exit(f"build_image_dataset wrote {written} records, expected {images}")
    if manifest["problems"]:
        sys.exit(f"build_image_dataset reported problems: {manifest['problems']}")
    return elapsed


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.workdir:
        Path(args.workdir).mkdir(parents=True, exist_ok=True)
    # A fresh folder even inside --workdir, so the cleanup never touches other files.
    workdir = Path(tempfile.mkdtemp(prefix="bench_build_image_dataset_", dir=args.workdir))
    n = args.num_images
    try:
        began = time.perf_counter()
        paths, clean_csv = make_train(workdir, args)
        # Flush the new files now, so their writeback does not throttle the timed writes.
        os.sync()
        generate_s = time.perf_counter() - began
        total_mb = sum(path.stat().st_size for path in paths.values()) / MB
        print(
            f"bench_build_image_dataset: {n} images, {total_mb * MB / n / 1024:.0f} KB mean, "
            f"{args.num_classes} classes, {args.num_shards} shards, {args.workers} workers "
            f"({args.running_mode})"
        )
        print(f"generate_s {generate_s:.1f}")
        print(f"total_MB {total_mb:.1f}")

        listed = clean_order(clean_csv)
        copy_s = raw_copy([paths[image_id] for image_id, _ in listed], workdir / "copy.bin")
        # Free the disk before the next copy of the data lands.
        (workdir / "copy.bin").unlink()
        print(f"raw_copy_images_per_s {n / copy_s:.0f}")
        print(f"raw_copy_MBps {total_mb / copy_s:.0f}")

        loop_s = single_process_loop(listed, paths, workdir / "loop", args.num_shards)
        shutil.rmtree(workdir / "loop")
        print(f"single_process_loop_images_per_s {n / loop_s:.1f}")

        config = BuildConfig(
            train_directory=f"{workdir}/train/*/*/*/",
            train_clean_csv_path=str(clean_csv),
            train_csv_path=str(workdir / "unused_train.csv"),
            output_directory=str(workdir / "job"),
            num_shards=args.num_shards,
            generate_train_validation_splits=True,
        )
        began = time.perf_counter()
        plan_build(config)
        planning_s = time.perf_counter() - began
        job_s = run_job(config, args.workers, args.running_mode, n)
        shutil.rmtree(workdir / "job")
        print(f"job_images_per_s {n / job_s:.1f}")
        print(f"job_s {job_s:.1f}")
        print(f"job_planning_s {planning_s:.2f}")
        print(f"ratio_to_raw_copy {copy_s / job_s:.3f}")
        print(f"ratio_to_single_process_loop {loop_s / job_s:.2f}")
    finally:
        if args.keep:
            print(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
