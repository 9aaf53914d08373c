"""The seed README's "test the trained model": export, extract two images, match them."""

from __future__ import annotations

import posixpath

from prefect import flow, get_run_logger

from delf_core import storage
from delf_core.export.config import LOCAL, LOCAL_AND_GLOBAL
from delf_core.export.trained import export_config
from delf_core.gldv2 import layout
from delf_core.gldv2.labels import read_clean_labels
from delf_core.training.config import TrainConfig
from flows.evaluation_configs import (
    CONFIG_NAME,
    EXPORT_NAME,
    FEATURES_DIR,
    MATCH_PICTURE,
    CheckModelConfig,
    model_output_dir,
)
from flows.export import export_task
from flows.extract_features import extract_features_task
from flows.match_images import match_images_task


def same_landmark_pair(dataset_dir: str) -> tuple[str, str]:
    """Two downloaded train images of one landmark, the first such of train_clean.csv.

    Args:
        dataset_dir: The download's output folder (with train/train_clean.csv).

    Returns:
        The two image paths, under `dataset_dir`.

    Raises:
        ValueError: No clean landmark has two images downloaded.
    """
    train_dir = storage.join(dataset_dir, layout.TRAIN)
    labels = read_clean_labels(storage.join(train_dir, "train_clean.csv"))
    # One listing, not one existence check per id: train_clean.csv lists 1.6 M ids.
    fs, root = storage.resolve(train_dir)
    present = {posixpath.basename(p)[: -len(".jpg")] for p in fs.glob(f"{root}/*/*/*/*.jpg")}
    first_of: dict[int, str] = {}
    for image_id, landmark in labels.items():
        if image_id not in present:
            continue
        if landmark in first_of:
            first, second = first_of[landmark], image_id
            return (
                storage.join(train_dir, layout.image_relpath(first)),
                storage.join(train_dir, layout.image_relpath(second)),
            )
        first_of[landmark] = image_id
    raise ValueError(
        f"{train_dir}: no landmark of train_clean.csv has two downloaded images; "
        "download more train tars or give the pair"
    )


def _image_name(path: str) -> str:
    return posixpath.splitext(posixpath.basename(path))[0]


@flow(name="check_model")
def check_model(
    train: TrainConfig, check: CheckModelConfig, dataset_dir: str | None = None
) -> dict:
    """Exports the model `train` trained, extracts two images' features and matches them.

    Args:
        train: The training run's flags: its logdir holds `delf_weights`, and its model
            flags (DELG head, autoencoder, strides) are the export's.
        check: The pair, the threshold, extra exports and the output folder.
        dataset_dir: Where to look for a pair when `check.pair` is None.

    Returns:
        exports {kind: path}, config_path, features_dir, the extraction counts,
        the pair, num_inliers and matched_image (the picture's path).
    """
    output_dir = model_output_dir(train, check.output_dir)
    if check.pair is not None:
        pair = check.pair
    elif dataset_dir is not None:
        pair = same_landmark_pair(dataset_dir)
    else:
        raise ValueError("give the pair of images to match, or the dataset_dir to pick it from")
    matched_kind = LOCAL_AND_GLOBAL if train.delg_global_features else LOCAL
    kinds = [matched_kind, *(k for k in dict.fromkeys(check.exports) if k != matched_kind)]
    exports = {
        kind: export_task(
            export_config(kind, train, storage.join(output_dir, EXPORT_NAME.format(kind=kind)))
        )
        for kind in kinds
    }
    features_dir = storage.join(output_dir, FEATURES_DIR)
    features = extract_features_task(
        exports[matched_kind]["export_path"],
        list(pair),
        features_dir,
        check.score_threshold,
        config_path=storage.join(output_dir, CONFIG_NAME),
    )
    if features["failed"]:
        raise ValueError(f"cannot match: extraction failed for {features['failed']}")
    picture = storage.join(output_dir, MATCH_PICTURE)
    (features_1,), (features_2,) = (features["features"][_image_name(p)] for p in pair)
    num_inliers = match_images_task(pair[0], pair[1], features_1, features_2, picture)
    get_run_logger().info("%d inliers between %s and %s", num_inliers, *pair)
    return {
        "exports": {kind: result["export_path"] for kind, result in exports.items()},
        "config_path": features["config_path"],
        "features_dir": features_dir,
        "extracted": features["extracted"],
        "skipped": features["skipped"],
        "pair": list(pair),
        "num_inliers": num_inliers,
        "matched_image": picture,
    }
