"""What an export builds: the flags of the three original export scripts in one config."""

from __future__ import annotations

import dataclasses

from delf_core.model_options import ModelOptions
from delf_core.step_config import check, option, same_as

# Written last in an export folder: its parameters, versions and files.
MANIFEST_NAME = "export_manifest.json"
LOCAL = "local"
GLOBAL = "global"
LOCAL_AND_GLOBAL = "local_and_global"
EXPORT_KINDS = (LOCAL, GLOBAL, LOCAL_AND_GLOBAL)
POOL_TYPES = ("None", "average", "sum")
# Where each original export script's defaults differ from ExportConfig's.
DEFAULTS_OF_KIND = {
    LOCAL: {},
    # The global exporter builds DELF without block3 strides and no autoencoder.
    GLOBAL: {"block3_strides": False, "use_autoencoder": False},
    LOCAL_AND_GLOBAL: {"delg_global_features": True},
}
_PATHS = ("ckpt_path", "export_path")
_LOCAL = ("block3_strides", "iou", "use_autoencoder", "autoencoder_dimensions",
          "local_feature_map_channels")  # fmt: skip
_GLOBAL = ("delg_global_features", "delg_gem_power", "delg_embedding_layer_dim")
# The flags each original export script takes.
FLAGS_OF_KIND = {
    LOCAL: (*_PATHS, *_LOCAL),
    GLOBAL: (
        *_PATHS,
        *_GLOBAL,
        "input_scales_list",
        "multi_scale_pool_type",
        "normalize_global_descriptor",
    ),  # fmt: skip
    LOCAL_AND_GLOBAL: (*_PATHS, *_LOCAL, *_GLOBAL),
}


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """One export: the flags of the three original export scripts in one config.

    `kind` is `local`, `global` or `local_and_global` (export_<kind>_model); each
    script has the flags of FLAGS_OF_KIND and the defaults of `for_kind`.
    """

    kind: str
    ckpt_path: str = option(
        "/tmp/delf-logdir/delf-weights", "trained weights to export (<logdir>/delf_weights)"
    )
    export_path: str = option("/tmp/delf-model", "SavedModel folder to create (must not exist)")
    block3_strides: bool = same_as(ModelOptions, "block3_strides")
    iou: float = option(
        1.0, "IoU of local-feature non-maximum suppression; 1.0 keeps all", above=0, maximum=1
    )
    use_autoencoder: bool = same_as(ModelOptions, "use_autoencoder")
    autoencoder_dimensions: int = same_as(ModelOptions, "autoencoder_dimensions")
    local_feature_map_channels: int = same_as(ModelOptions, "local_feature_map_channels")
    delg_global_features: bool = same_as(ModelOptions, "delg_global_features")
    delg_gem_power: float = same_as(ModelOptions, "delg_gem_power")
    delg_embedding_layer_dim: int = same_as(ModelOptions, "delg_embedding_layer_dim")
    input_scales_list: tuple[float, ...] | None = option(
        None,
        "comma-separated fixed scales; the signature then takes only the image",
        above=0,
    )
    multi_scale_pool_type: str = option(
        "None",
        "pooling of the per-scale descriptors: None keeps one per scale",
        choices=POOL_TYPES,
    )
    normalize_global_descriptor: bool = option(False, "L2-normalise the global descriptor(s)")

    def __post_init__(self):
        if self.kind not in EXPORT_KINDS:
            raise ValueError(f"export kind must be one of {EXPORT_KINDS}, got {self.kind!r}")
        if self.input_scales_list is not None:
            scales = tuple(float(s) for s in self.input_scales_list)
            if not scales:
                raise ValueError("--input_scales_list is empty: give scales or leave it unset")
            object.__setattr__(self, "input_scales_list", scales)
        check(self)

    @classmethod
    def for_kind(cls, kind: str, **fields) -> ExportConfig:
        """A config with the original script's defaults for `kind`, then `fields`."""
        return cls(kind=kind, **{**DEFAULTS_OF_KIND[kind], **fields})

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
