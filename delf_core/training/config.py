"""The flags of train, with the original's defaults, and how the class count is found."""

from __future__ import annotations

import dataclasses
import json
import posixpath

import tensorflow as tf

from delf_core.build_image_dataset.report import MANIFEST_NAME

# Classes of each GLDv2 version, as the original reader declares them.
NUM_CLASSES = {"gld_v1": 14951, "gld_v2": 203094, "gld_v2_clean": 81313}
# Takes the class count from the build_image_dataset manifest beside the train shards.
FROM_MANIFEST = "manifest"
DATASET_VERSIONS = (*NUM_CLASSES, FROM_MANIFEST)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What and how to train (REFERENCE §4.1, plus the intervals the original hard-coded).

    The DELG flags only matter with `delg_global_features`; the autoencoder ones only
    with `use_autoencoder`.
    """

    logdir: str = "/tmp/delf"
    train_file_pattern: str = "/tmp/data/train*"
    validation_file_pattern: str = "/tmp/data/validation*"
    dataset_version: str = "gld_v1"
    num_classes: int | None = None
    seed: int = 0
    deterministic: bool = False
    initial_lr: float = 0.01
    batch_size: int = 32
    max_iters: int = 500000
    block3_strides: bool = True
    use_augmentation: bool = True
    imagenet_checkpoint: str | None = None
    attention_loss_weight: float = 1.0
    delg_global_features: bool = False
    delg_gem_power: float = 3.0
    delg_embedding_layer_dim: int = 2048
    delg_scale_factor_init: float = 45.25
    delg_arcface_margin: float = 0.1
    image_size: int = 321
    use_autoencoder: bool = True
    reconstruction_loss_weight: float = 10.0
    autoencoder_dimensions: int = 128
    local_feature_map_channels: int = 1024
    mixed_precision: bool = False
    steps_per_loop: int = 1
    report_interval: int = 100
    eval_interval: int = 1000
    save_interval: int = 1000
    # Validation reads at most one pass over the split, capped at num_eval_batches
    # batches or, by default, at max_eval_images (the original's 50000).
    num_eval_batches: int | None = None
    max_eval_images: int = 50000
    clip_norm: float = 10.0
    max_checkpoints: int = 10
    debug: bool = False

    def validate(self) -> None:
        """Raises ValueError naming the bad flag."""
        if self.dataset_version not in DATASET_VERSIONS:
            choices = ", ".join(DATASET_VERSIONS)
            raise ValueError(f"--dataset_version={self.dataset_version}: use one of {choices}")
        for name in (
            "steps_per_loop",
            "batch_size",
            "max_iters",
            "image_size",
            "report_interval",
            "eval_interval",
            "save_interval",
            "max_eval_images",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name}={getattr(self, name)}: must be at least 1")
        if self.num_classes is not None and self.num_classes < 2:
            raise ValueError(f"--num_classes={self.num_classes}: must be at least 2")

    def eval_image_limit(self) -> int:
        """Most images one validation reads (fewer when the split is smaller)."""
        if self.num_eval_batches:
            return self.num_eval_batches * self.batch_size
        return self.max_eval_images

    def debugged(self) -> TrainConfig:
        """`--debug` as the original: batch 4, 100 steps, one eval batch, save every step."""
        if not self.debug:
            return self
        return dataclasses.replace(
            self,
            batch_size=4,
            max_iters=100,
            num_eval_batches=1,
            save_interval=1,
            report_interval=10,
            eval_interval=10,
        )


def resolve_num_classes(config: TrainConfig) -> int:
    """`--num_classes` if given, else the dataset version's, else the build manifest's.

    Raises:
      ValueError: with `--dataset_version=manifest` when no manifest sits beside the
        train shards.
    """
    if config.num_classes is not None:
        return config.num_classes
    if config.dataset_version in NUM_CLASSES:
        return NUM_CLASSES[config.dataset_version]
    path = posixpath.join(posixpath.dirname(config.train_file_pattern), MANIFEST_NAME)
    if not tf.io.gfile.exists(path):
        raise ValueError(
            f"--dataset_version={FROM_MANIFEST}: no {MANIFEST_NAME} beside "
            f"--train_file_pattern={config.train_file_pattern}; pass --num_classes"
        )
    with tf.io.gfile.GFile(path) as handle:
        return int(json.load(handle)["num_classes"])
