"""`delf train`: the original's train.py flags, on the distributed custom loop."""

from __future__ import annotations

import argparse
import sys

from delf_core.cli_flags import add_bool_flag, add_flag, positive_int
from delf_core.training.config import DATASET_VERSIONS, FROM_MANIFEST, TrainConfig

_DEFAULTS = TrainConfig()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    d = _DEFAULTS
    add_bool_flag(
        parser, "debug", d.debug, "small run: batch 4, 100 steps, one eval batch, save every step"
    )
    add_flag(parser, "logdir", d.logdir, "checkpoints, weights and summaries go here")
    add_flag(parser, "train_file_pattern", d.train_file_pattern, "train TFRecord shards")
    add_flag(
        parser, "validation_file_pattern", d.validation_file_pattern, "validation TFRecord shards"
    )
    add_flag(
        parser,
        "dataset_version",
        d.dataset_version,
        f"sets the class count; '{FROM_MANIFEST}' reads it from the build manifest "
        "beside the train shards",
        choices=DATASET_VERSIONS,
    )
    add_flag(
        parser,
        "num_classes",
        d.num_classes,
        "class count; overrides --dataset_version",
        type=positive_int,
    )
    add_flag(parser, "seed", d.seed, "seed of the initial weights, data order and crops", type=int)
    add_bool_flag(
        parser,
        "deterministic",
        d.deterministic,
        "the same seed gives the same batches (a little slower)",
    )
    add_flag(
        parser,
        "initial_lr",
        d.initial_lr,
        "learning rate at step 0, decays linearly to 0",
        type=float,
    )
    add_flag(parser, "batch_size", d.batch_size, "global batch size", type=positive_int)
    add_flag(parser, "max_iters", d.max_iters, "training steps", type=positive_int)
    add_bool_flag(
        parser,
        "block3_strides",
        d.block3_strides,
        "stride 2 after conv4: local features at stride 32",
    )
    add_bool_flag(parser, "use_augmentation", d.use_augmentation, "random crops when training")
    add_flag(
        parser,
        "imagenet_checkpoint",
        d.imagenet_checkpoint,
        "Keras ResNet50 notop .h5 to start the backbone from",
    )
    add_flag(
        parser,
        "attention_loss_weight",
        d.attention_loss_weight,
        "weight of the attention loss",
        type=float,
    )
    add_bool_flag(
        parser,
        "delg_global_features",
        d.delg_global_features,
        "train DELG: GeM, whitening and an ArcFace cosine classifier",
    )
    add_flag(parser, "delg_gem_power", d.delg_gem_power, "GeM power", type=float)
    add_flag(
        parser,
        "delg_embedding_layer_dim",
        d.delg_embedding_layer_dim,
        "size of the global descriptor",
        type=positive_int,
    )
    add_flag(
        parser,
        "delg_scale_factor_init",
        d.delg_scale_factor_init,
        "scale of the cosine logits",
        type=float,
    )
    add_flag(parser, "delg_arcface_margin", d.delg_arcface_margin, "ArcFace margin", type=float)
    add_flag(parser, "image_size", d.image_size, "training image side", type=positive_int)
    add_bool_flag(
        parser,
        "use_autoencoder",
        d.use_autoencoder,
        "learn the local descriptor's dimension reduction",
    )
    add_flag(
        parser,
        "reconstruction_loss_weight",
        d.reconstruction_loss_weight,
        "weight of the autoencoder's loss",
        type=float,
    )
    add_flag(
        parser,
        "autoencoder_dimensions",
        d.autoencoder_dimensions,
        "local descriptor size after reduction",
        type=float,
    )
    add_flag(
        parser,
        "local_feature_map_channels",
        d.local_feature_map_channels,
        "channels of the local feature map",
        type=float,
    )
    add_bool_flag(parser, "mixed_precision", d.mixed_precision, "float16 compute (GPU)")
    add_flag(
        parser,
        "report_interval",
        d.report_interval,
        "steps between logs and summaries",
        type=positive_int,
    )
    add_flag(
        parser, "eval_interval", d.eval_interval, "steps between validations", type=positive_int
    )
    add_flag(
        parser, "save_interval", d.save_interval, "steps between checkpoints", type=positive_int
    )
    add_flag(
        parser,
        "num_eval_batches",
        d.num_eval_batches,
        "most validation batches per run (default: one pass over the validation split, "
        "at most 50000 images)",
        type=positive_int,
    )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    names = {field for field in TrainConfig.__dataclass_fields__}
    return TrainConfig(**{name: value for name, value in vars(args).items() if name in names})


def run(args: argparse.Namespace) -> int:
    from delf_core.training.loop import LabelOutOfRangeError
    from delf_core.training.run_record import train_recorded

    # As the flow's train task: a logdir of a run on other data is set aside, not resumed.
    try:
        result = train_recorded(config_from_args(args))
    except (ValueError, LabelOutOfRangeError) as error:
        print(f"delf train: error: {error}", file=sys.stderr)
        return 2
    if result.already_done:
        print(f"delf train: {args.logdir} is already at step {result.step}; nothing to do")
    else:
        print(
            f"delf train: step {result.step}, resumed from {result.resumed_from}; "
            f"metrics {result.metrics}"
        )
    return 0
