"""Benchmark of training: DELF/DELG steps per second against the input pipeline alone."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tensorflow as tf
from bench_build_image_dataset import encode, make_bases, vary

from delf_core import records
from delf_core.input_pipeline import create_dataset
from delf_core.training.config import TrainConfig
from delf_core.training.step import build_model_and_optimizer, make_train_step


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--image_size", type=int, default=321)
    parser.add_argument("--batch_size", type=int, default=8, help="global batch")
    parser.add_argument("--num_classes", type=int, default=81313, help="GLDv2-clean's")
    parser.add_argument("--num_images", type=int, default=256, help="JPEGs in the shards")
    parser.add_argument("--image_kb", type=int, default=300)
    parser.add_argument("--num_shards", type=int, default=8)
    parser.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up")
    parser.add_argument("--input_batches", type=int, default=30)
    parser.add_argument("--mixed_precision", action="store_true")
    parser.add_argument("--workdir", default=None)
    return parser.parse_args(argv)


def write_shards(folder: Path, args: argparse.Namespace) -> str:
    """Train shards of realistic JPEGs (~image_kb KB, 1024x768) with random labels."""
    rng = np.random.default_rng(0)
    bases = make_bases(rng, args.image_kb)
    writers = [
        tf.io.TFRecordWriter(str(folder / records.shard_name("train", i, args.num_shards)))
        for i in range(args.num_shards)
    ]
    for k in range(args.num_images):
        base, quality = bases[k % len(bases)]
        data = encode(vary(base, rng), quality)
        example = records.make_example(
            f"{k:016x}", data, 768, 1024, int(rng.integers(args.num_classes))
        )
        writers[k % args.num_shards].write(example)
    for writer in writers:
        writer.close()
    return str(folder / "train-*")


def input_images_per_s(pattern: str, args: argparse.Namespace) -> float:
    """The input pipeline alone, as training uses it (augmentation on)."""
    dataset = create_dataset(pattern, args.image_size, args.batch_size, augmentation=True)
    iterator = iter(dataset)
    for _ in range(3):
        next(iterator)
    began = time.perf_counter()
    for _ in range(args.input_batches):
        next(iterator)
    return args.input_batches * args.batch_size / (time.perf_counter() - began)


def train_images_per_s(delg: bool, args: argparse.Namespace) -> float:
    """The trainer's own step on one batch held in memory: the model without input."""
    config = TrainConfig(
        delg_global_features=delg,
        image_size=args.image_size,
        batch_size=args.batch_size,
        mixed_precision=args.mixed_precision,
        max_iters=1000,
    )
    strategy = tf.distribute.MirroredStrategy()
    model, optimizer = build_model_and_optimizer(config, args.num_classes, strategy)
    step = make_train_step(model, optimizer, strategy, config, args.num_classes)
    images = tf.random.uniform([args.batch_size, args.image_size, args.image_size, 3], -1, 1)
    labels = tf.random.uniform([args.batch_size], 0, args.num_classes, dtype=tf.int64)
    batch = tf.data.Dataset.from_tensors((images, labels)).repeat()
    iterator = iter(strategy.experimental_distribute_dataset(batch))
    one = tf.constant(1)
    float(step(iterator, one)["loss/total"])  # warm-up: traces and compiles
    began = time.perf_counter()
    for _ in range(args.steps):
        float(step(iterator, one)["loss/total"])
    return args.steps * args.batch_size / (time.perf_counter() - began)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    devices = [d.device_type for d in tf.config.list_logical_devices()]
    print(
        f"bench_train: image_size {args.image_size}, batch {args.batch_size}, "
        f"{args.num_classes} classes, {'mixed float16' if args.mixed_precision else 'float32'}, "
        f"devices {devices}"
    )
    folder = Path(tempfile.mkdtemp(prefix="bench-train-", dir=args.workdir))
    try:
        pattern = write_shards(folder, args)
        input_rate = input_images_per_s(pattern, args)
        print(f"input_pipeline_images_per_s {input_rate:.1f}")
        for name, delg in (("delf", False), ("delg", True)):
            rate = train_images_per_s(delg, args)
            print(f"{name}_train_images_per_s {rate:.2f}")
            print(f"ratio_input_to_{name} {input_rate / rate:.1f}")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
