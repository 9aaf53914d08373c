"""The flags of train, with the original's defaults."""

from __future__ import annotations

import dataclasses

from delf_core.model_options import ModelOptions
from delf_core.step_config import check, option, same_as

# Classes of each GLDv2 version, as the original reader declares them.
NUM_CLASSES = {"gld_v1": 14951, "gld_v2": 203094, "gld_v2_clean": 81313}
# Takes the class count from the build_image_dataset manifest beside the train shards.
FROM_MANIFEST = "manifest"
DATASET_VERSIONS = (*NUM_CLASSES, FROM_MANIFEST)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """What and how to train: the original's flags (REFERENCE §4.1), plus the intervals,
    limits and seed it hard-coded.

    The DELG flags only matter with `delg_global_features`; the autoencoder ones only
    with `use_autoencoder`.
    """

    logdir: str = option("/tmp/delf", "checkpoints, weights and summaries go here", flow=False)
    train_file_pattern: str = option("/tmp/data/train*", "train TFRecord shards", flow=False)
    validation_file_pattern: str = option(
        "/tmp/data/validation*", "validation TFRecord shards", flow=False
    )
    dataset_version: str = option(
        "gld_v1",
        f"sets the class count; '{FROM_MANIFEST}' reads it from the build manifest beside "
        "the train shards",
        choices=DATASET_VERSIONS,
    )
    num_classes: int | None = option(None, "class count; overrides --dataset_version", minimum=2)
    seed: int = option(0, "seed of the initial weights, data order and crops")
    deterministic: bool = option(
        False,
        "the same seed gives the same batches and weights: ordered input, deterministic "
        "TensorFlow kernels (slower, most of all on GPUs)",
    )
    initial_lr: float = option(0.01, "learning rate at step 0, decays linearly to 0", above=0)
    batch_size: int = option(32, "global batch size", minimum=1)
    max_iters: int = option(500000, "training steps", minimum=1)
    block3_strides: bool = same_as(ModelOptions, "block3_strides")
    use_augmentation: bool = option(True, "random crops when training")
    imagenet_checkpoint: str | None = option(
        None, "Keras ResNet50 notop .h5 to start the backbone from (path or URL)"
    )
    attention_loss_weight: float = option(1.0, "weight of the attention loss")
    delg_global_features: bool = same_as(ModelOptions, "delg_global_features")
    delg_gem_power: float = same_as(ModelOptions, "delg_gem_power")
    delg_embedding_layer_dim: int = same_as(ModelOptions, "delg_embedding_layer_dim")
    delg_scale_factor_init: float = same_as(ModelOptions, "delg_scale_factor_init")
    delg_arcface_margin: float = same_as(ModelOptions, "delg_arcface_margin")
    image_size: int = option(321, "training image side", minimum=1)
    use_autoencoder: bool = same_as(ModelOptions, "use_autoencoder")
    reconstruction_loss_weight: float = option(10.0, "weight of the autoencoder's loss")
    autoencoder_dimensions: int = same_as(ModelOptions, "autoencoder_dimensions")
    local_feature_map_channels: int = same_as(ModelOptions, "local_feature_map_channels")
    mixed_precision: bool = option(False, "float16 compute (GPU)")
    steps_per_loop: int = option(1, "steps run inside one tf.function call", minimum=1)
    report_interval: int = option(100, "steps between logs and summaries", minimum=1)
    eval_interval: int = option(1000, "steps between validations", minimum=1)
    save_interval: int = option(1000, "steps between checkpoints", minimum=1)
    num_eval_batches: int | None = option(
        None,
        "most validation batches per run; none: one pass over the validation split, "
        "at most --max_eval_images images",
        minimum=1,
    )
    max_eval_images: int = option(
        50000, "most validation images per run, without --num_eval_batches", minimum=1
    )
    clip_norm: float = option(10.0, "gradients are clipped to this global norm", above=0)
    max_checkpoints: int = option(10, "checkpoints kept in the logdir", minimum=1)
    debug: bool = option(False, "small run: batch 4, 100 steps, one eval batch, save every step")

    def validate(self) -> None:
        """Raises ValueError naming the bad flag."""
        check(self)

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
