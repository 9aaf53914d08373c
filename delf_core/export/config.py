"""What an export builds: the flags of the three original export scripts in one config."""

from __future__ import annotations

import dataclasses

LOCAL = "local"
GLOBAL = "global"
LOCAL_AND_GLOBAL = "local_and_global"
EXPORT_KINDS = (LOCAL, GLOBAL, LOCAL_AND_GLOBAL)
POOL_TYPES = ("None", "average", "sum")


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export; the defaults of each kind are those of its original script.

    Attributes:
        kind: `local`, `global` or `local_and_global` (export_<kind>_model).
        ckpt_path: The trained weights, e.g. `<logdir>/delf_weights`.
        export_path: The SavedModel folder to create; it must not exist.
        block3_strides: Whether the model was trained with block3 strides; sets the
            local-feature stride (32, else 16).
        iou: Non-maximum-suppression IoU of the local features; 1.0 keeps all.
        use_autoencoder: Local descriptors from the autoencoder's bottleneck.
        autoencoder_dimensions: The autoencoder's bottleneck size.
        local_feature_map_channels: Channels the autoencoder reconstructs.
        delg_global_features: DELG global head (GeM + embedding), else DELF's average
            pooled block4.
        delg_gem_power: GeM power.
        delg_embedding_layer_dim: DELG global descriptor size.
        input_scales_list: Fixed scales: the signature then takes only the image.
        multi_scale_pool_type: `None` keeps one descriptor per scale; `average` or `sum`
            pools them.
        normalize_global_descriptor: L2-normalise the global descriptor(s).
    """

    kind: str
    ckpt_path: str = "/tmp/delf_weights"
    export_path: str = "/tmp/delf_model"
    block3_strides: bool = True
    iou: float = 1.0
    use_autoencoder: bool = True
    autoencoder_dimensions: int = 128
    local_feature_map_channels: int = 1024
    delg_global_features: bool = False
    delg_gem_power: float = 3.0
    delg_embedding_layer_dim: int = 2048
    input_scales_list: tuple[float, ...] | None = None
    multi_scale_pool_type: str = "None"
    normalize_global_descriptor: bool = False

    def __post_init__(self):
        if self.kind not in EXPORT_KINDS:
            raise ValueError(f"export kind must be one of {EXPORT_KINDS}, got {self.kind!r}")
        if self.multi_scale_pool_type not in POOL_TYPES:
            raise ValueError(
                f"--multi_scale_pool_type must be one of {POOL_TYPES}, "
                f"got {self.multi_scale_pool_type!r}"
            )
        if not 0.0 < self.iou <= 1.0:
            raise ValueError(f"--iou must be in (0, 1], got {self.iou}")
        if self.input_scales_list is not None:
            scales = tuple(float(s) for s in self.input_scales_list)
            if not scales or min(scales) <= 0:
                raise ValueError(f"--input_scales_list must be positive, got {scales}")
            object.__setattr__(self, "input_scales_list", scales)

    @classmethod
    def for_kind(cls, kind: str, **fields) -> ExportConfig:
        """A config with the original script's defaults for `kind`, then `fields`."""
        defaults = {
            LOCAL: {},
            # The global exporter builds DELF without block3 strides and no autoencoder.
            GLOBAL: {"block3_strides": False, "use_autoencoder": False},
            LOCAL_AND_GLOBAL: {"delg_global_features": True},
        }[kind]
        return cls(kind=kind, **{**defaults, **fields})

    @property
    def has_local(self) -> bool:
        return self.kind in (LOCAL, LOCAL_AND_GLOBAL)

    @property
    def has_global(self) -> bool:
        return self.kind in (GLOBAL, LOCAL_AND_GLOBAL)

    @property
    def feature_stride(self) -> int:
        """Pixels between local-feature centres: 16, doubled by block3 strides."""
        return 32 if self.block3_strides else 16
