"""DELF/DELG feature formats and pre-processing: DelfConfig, .delf/.datum I/O, PCA, resizing."""

from delf_core.features import datum_io, feature_io
from delf_core.features.config import (
    DelfConfig,
    DelfConfigError,
    check_delf_config,
    global_scales_indices,
    load_delf_config,
    parse_delf_config,
    write_delf_config,
)
from delf_core.features.feature_io import LocalFeatures
from delf_core.features.pca import PcaParameters, apply_pca_and_whitening, load_pca_parameters
from delf_core.features.preprocess import (
    MIN_IMAGE_SIZE,
    box_centers,
    decode_rgb,
    is_too_small,
    load_rgb,
    normalize_pixel_values,
    receptive_boxes,
    receptive_boxes_tf,
    resize_image,
)

__all__ = [
    "MIN_IMAGE_SIZE",
    "DelfConfig",
    "DelfConfigError",
    "LocalFeatures",
    "PcaParameters",
    "apply_pca_and_whitening",
    "box_centers",
    "check_delf_config",
    "datum_io",
    "decode_rgb",
    "feature_io",
    "global_scales_indices",
    "is_too_small",
    "load_delf_config",
    "load_pca_parameters",
    "load_rgb",
    "normalize_pixel_values",
    "parse_delf_config",
    "receptive_boxes",
    "receptive_boxes_tf",
    "resize_image",
    "write_delf_config",
]
