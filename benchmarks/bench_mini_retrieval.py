"""The mini retrieval benchmark: mAP of an untrained and a briefly trained DELG model.

The mini dataset's test queries against its index (landmarks unseen in training), in the
Revisited format, through the same steps as the DELG instructions: export, extract
queries and index, perform_retrieval with and without geometric verification.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import tensorflow as tf

from beam_jobs.build_image_dataset import run_build
from delf_core.build_image_dataset import BuildConfig
from delf_core.download import DownloadConfig, download
from delf_core.export import ExportConfig, export_model
from delf_core.features.extract import extract_images, items_from_dataset
from delf_core.features.extractor import Extractor
from delf_core.features.presets import DELG_PRESET, load_preset
from delf_core.gldv2.mini import MiniDatasetConfig, make_mini_dataset
from delf_core.gldv2.mirror import MirrorServer
from delf_core.gldv2.revisited import write_revisited_ground_truth
from delf_core.model import create_model
from delf_core.retrieval.perform import RetrievalConfig, perform_retrieval
from delf_core.training.config import TrainConfig
from delf_core.training.loop import WEIGHTS_NAME, train


def delg_config(model: str):
    """The DELG configs' pyramid and global scales (the shipped preset), with a threshold
    small models pass and no size bound."""
    config = load_preset(DELG_PRESET, model, score_threshold=0.0)
    config.ClearField("max_image_size")
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train_steps", type=int, default=300)
    parser.add_argument("--image_size", type=int, default=96)
    parser.add_argument("--batch_size", type=int, default=16)
    parser.add_argument("--initial_lr", type=float, default=0.02)
    parser.add_argument("--workdir", default=None)
    parser.add_argument("--keep", action="store_true", help="leave the work folder")
    return parser.parse_args(argv)


def prepare(root: Path) -> tuple[Path, Path, Path]:
    """Mini dataset, downloaded through the mirror, its TFRecords and ground truth."""
    bucket, dataset = root / "bucket", root / "gldv2_dataset"
    make_mini_dataset(MiniDatasetConfig(), str(bucket))
    with MirrorServer(bucket) as server:
        download(DownloadConfig(2, 1, 1, output_dir=str(dataset), base_url=server.url))
    records = root / "tfrecord"
    run_build(
        BuildConfig(
            train_directory=f"{dataset}/train/*/*/*/",
            train_clean_csv_path=f"{dataset}/train/train_clean.csv",
            output_directory=str(records),
            num_shards=2,
            generate_train_validation_splits=True,
        )
    )
    gnd = root / "gnd_mini.pkl"
    write_revisited_ground_truth(str(dataset), str(gnd))
    return dataset, records, gnd


def evaluate(name: str, weights: str, root: Path, dataset: Path, gnd: Path) -> dict:
    model = export_model(
        ExportConfig.for_kind(
            "local_and_global", ckpt_path=weights, export_path=str(root / f"{name}_model")
        )
    )
    extractor = Extractor(delg_config(model))
    features = root / f"{name}_features"
    started = time.perf_counter()
    for image_set, split in (("query", "test"), ("index", "index")):
        items = items_from_dataset(str(gnd), str(dataset / split), image_set)
        report = extract_images(extractor, items, str(features / image_set), delg_form=True)
        assert not report.failed, report.failed
    extract_s = time.perf_counter() - started
    config = RetrievalConfig(
        dataset_file_path=str(gnd),
        query_features_dir=str(features / "query"),
        index_features_dir=str(features / "index"),
        use_geometric_verification=True,
        output_dir=str(root / f"{name}_retrieval"),
    )
    result = perform_retrieval(config)
    print(f"{name}_extract_s {extract_s:.1f}")
    for protocol, value in sorted(result.mean_average_precision.items()):
        print(f"{name}_{protocol}_mAP {100 * value:.2f}")
    return result.mean_average_precision


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bench-mini-retrieval-", dir=args.workdir))
    try:
        dataset, records, gnd = prepare(root)
        config = TrainConfig(
            logdir=str(root / "trained"),
            train_file_pattern=f"{records}/train*",
            validation_file_pattern=f"{records}/validation*",
            dataset_version="manifest",
            delg_global_features=True,
            image_size=args.image_size,
            batch_size=args.batch_size,
            initial_lr=args.initial_lr,
            max_iters=args.train_steps,
            report_interval=50,
            eval_interval=args.train_steps,
            save_interval=args.train_steps,
            num_eval_batches=1,
        )
        # The same initial weights, untrained: what the training run starts from.
        tf.keras.utils.set_random_seed(config.seed)
        untrained = create_model("delg_r50", num_classes=10)
        untrained.build_for(args.image_size)
        untrained_weights = str(root / "untrained" / WEIGHTS_NAME)
        tf.train.Checkpoint(model=untrained).write(untrained_weights)
        started = time.perf_counter()
        train(config)
        print(f"train_steps {args.train_steps} in {time.perf_counter() - started:.0f} s")
        before = evaluate("untrained", untrained_weights, root, dataset, gnd)
        after = evaluate("trained", str(root / "trained" / WEIGHTS_NAME), root, dataset, gnd)
        for protocol in sorted(after):
            print(f"gain_{protocol}_mAP {100 * (after[protocol] - before[protocol]):+.2f}")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
