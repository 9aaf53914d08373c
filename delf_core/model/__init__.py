"""DELF/DELG Keras models, registered by variant name."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from delf_core.model.attention_head import AttentionHead
from delf_core.model.autoencoder import Autoencoder
from delf_core.model.cosine_classifier import CosineClassifier
from delf_core.model.delf_model import DelfModel, ModelConfig
from delf_core.model.gem_pooling import GeMPooling
from delf_core.model.imagenet import load_imagenet_weights
from delf_core.model.resnet50 import BottleneckBlock, ResNet50


def delf_r50(**overrides) -> DelfModel:
    """DELF: ResNet-50, average-pooled global feature with softmax, attention, autoencoder."""
    return DelfModel(ModelConfig(**{"delg_global_features": False, **overrides}))


def delg_r50(**overrides) -> DelfModel:
    """DELG: ResNet-50, GeM + embedding with a cosine/ArcFace classifier, attention, autoencoder."""
    return DelfModel(ModelConfig(**{"delg_global_features": True, **overrides}))


MODEL_VARIANTS: dict[str, Callable[..., DelfModel]] = {
    "delf_r50": delf_r50,
    "delg_r50": delg_r50,
}


def create_model(name: str, **config_overrides) -> DelfModel:
    """Builds a registered variant, e.g. `create_model("delg_r50", num_classes=81313)`.

    Args:
        name: A key of `MODEL_VARIANTS`.
        **config_overrides: `ModelConfig` fields; `num_classes` is required.

    Returns:
        The (unbuilt) model; call `build_for(image_size)` to create its variables.

    Raises:
        ValueError: Unknown variant or `ModelConfig` field.
    """
    if name not in MODEL_VARIANTS:
        raise ValueError(f"unknown model variant {name!r}; choose one of {sorted(MODEL_VARIANTS)}")
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    unknown = sorted(set(config_overrides) - fields)
    if unknown:
        raise ValueError(f"unknown ModelConfig field(s) {unknown} for model {name!r}")
    return MODEL_VARIANTS[name](**config_overrides)


__all__ = [
    "MODEL_VARIANTS",
    "AttentionHead",
    "Autoencoder",
    "BottleneckBlock",
    "CosineClassifier",
    "DelfModel",
    "GeMPooling",
    "ModelConfig",
    "ResNet50",
    "create_model",
    "load_imagenet_weights",
]
