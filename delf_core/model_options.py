"""The model's structure options, declared once for the train and export steps and the model.

Train flags, export flags and `ModelConfig` take these by name (`step_config.same_as`),
so a checkpoint and its export agree on what each flag means and defaults to. Plain
Python: importing it does not import TensorFlow.
"""

from __future__ import annotations

import dataclasses

from delf_core.step_config import option

# Channels of ResNet-50's block3, which the autoencoder reconstructs.
BLOCK3_CHANNELS = 1024


@dataclasses.dataclass(frozen=True)
class ModelOptions:
    """The flags that shape a DELF/DELG model, with the original's defaults."""

    block3_strides: bool = option(
        True, "stride 2 after conv4: local features at stride 32, else 16"
    )
    use_autoencoder: bool = option(
        True, "local descriptors from an autoencoder that reduces their dimension"
    )
    autoencoder_dimensions: int = option(
        128, "local descriptor size after reduction (the autoencoder's bottleneck)", minimum=1
    )
    local_feature_map_channels: int = option(
        BLOCK3_CHANNELS,
        "channels of the local feature map the autoencoder reconstructs",
        minimum=1,
    )
    delg_global_features: bool = option(
        False,
        "DELG: GeM pooling, whitening and an ArcFace cosine classifier (else DELF's "
        "average-pooled block4 and softmax)",
    )
    delg_gem_power: float = option(3.0, "GeM power", above=0)
    delg_embedding_layer_dim: int = option(2048, "size of the global descriptor", minimum=1)
    delg_scale_factor_init: float = option(45.25, "scale of the cosine logits")
    delg_arcface_margin: float = option(0.1, "ArcFace margin (radians)")
