"""Benchmark of extraction: images/s with the 7-scale pyramid against the model alone."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from bench_build_image_dataset import encode, make_bases, vary

from delf_core.export import ExportConfig, export_model
from delf_core.features.extract import ImageItem, extract_images
from delf_core.features.extractor import Extractor
from delf_core.features.presets import SEED_PRESET, load_preset, seed_delf_config
from delf_core.model import create_model

SEED_SCALES = tuple(load_preset(SEED_PRESET).image_scales)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--num_images", type=int, default=6, help="timed images")
    parser.add_argument("--image_kb", type=int, default=300, help="JPEG size (1024x768)")
    parser.add_argument("--delg", action="store_true", help="local+global DELG export")
    parser.add_argument("--workdir", default=None)
    return parser.parse_args(argv)


def write_images(folder: Path, count: int, image_kb: int) -> list[ImageItem]:
    rng = np.random.default_rng(0)
    bases = make_bases(rng, image_kb)
    items = []
    for k in range(count + 1):  # one more, for the warm-up
        base, quality = bases[k % len(bases)]
        path = folder / f"image_{k:03d}.jpg"
        path.write_bytes(encode(vary(base, rng), quality))
        items.append(ImageItem(path.stem, str(path)))
    return items


def export(folder: Path, delg: bool, iou: float, name: str) -> str:
    weights = folder / "delf_weights"
    if not (folder / "delf_weights.index").exists():
        model = create_model("delg_r50" if delg else "delf_r50", num_classes=10)
        model.build_for(64)
        tf.train.Checkpoint(model=model).write(str(weights))
    kind = "local_and_global" if delg else "local"
    config = ExportConfig.for_kind(
        kind, ckpt_path=str(weights), export_path=str(folder / name), iou=iou
    )
    return export_model(config)


def config_for(model_path: str, delg: bool):
    """The seed's config (the shipped preset), images at most 1024 px, threshold 0."""
    config = seed_delf_config(model_path, delg, score_threshold=0.0)
    config.max_image_size = 1024
    return config


def extraction_images_per_s(model_path: str, items: list[ImageItem], out: Path, delg: bool):
    extractor = Extractor(config_for(model_path, delg))
    extract_images(extractor, items[:1], str(out / "warm"), delg_form=delg)
    start = time.perf_counter()
    report = extract_images(extractor, items[1:], str(out / "features"), delg_form=delg)
    elapsed = time.perf_counter() - start
    assert report.extracted == len(items) - 1 and not report.failed, report
    return (len(items) - 1) / elapsed


def model_alone_images_per_s(model_path: str, delg: bool, count: int) -> float:
    """The bound: the exported model alone on an image already decoded and in memory,
    with the extractor's inputs; no file reading, decoding, post-processing or writing."""
    signature = tf.saved_model.load(model_path).signatures["serving_default"]
    image = tf.constant(np.random.default_rng(0).integers(0, 256, (768, 1024, 3), np.uint8))
    inputs = {
        "input_image": image,
        "input_scales": tf.constant(SEED_SCALES, tf.float32),
        "input_max_feature_num": tf.constant(1000),
        "input_abs_thres": tf.constant(0.0),
    }
    if delg:
        inputs["input_global_scales_ind"] = tf.constant([3, 4, 5])
    signature(**inputs)  # warm-up
    start = time.perf_counter()
    for _ in range(count):
        signature(**inputs)["features"].numpy()
    return count / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-extract-", dir=args.workdir))
    try:
        items = write_images(root, args.num_images, args.image_kb)
        top_k = export(root, args.delg, 1.0, "model_top_k")
        # An IoU just under 1 suppresses nothing either, but runs the general NMS.
        nms = export(root, args.delg, 0.999999, "model_nms")
        print(f"device: {'GPU' if tf.config.list_physical_devices('GPU') else 'CPU'}")
        print(f"images: {args.num_images} JPEGs 1024x768 ~{args.image_kb} KB, 7 scales")
        bound = model_alone_images_per_s(top_k, args.delg, args.num_images)
        print(f"model_alone_images_per_s: {bound:.3f}")
        ours = extraction_images_per_s(top_k, items, root / "top_k", args.delg)
        print(f"extract_images_per_s: {ours:.3f}")
        print(f"ratio_to_model_alone: {ours / bound:.3f}")
        general = extraction_images_per_s(nms, items, root / "nms", args.delg)
        print(f"extract_with_general_nms_images_per_s: {general:.3f}")
        print(f"top_k_speedup_over_nms: {ours / general:.3f}")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
