"""PCA and whitening of descriptors with parameters stored as .datum files (REFERENCE §6.3)."""

from __future__ import annotations

import dataclasses

import numpy as np

from delf_core.features import datum_io
from delf_core.features.protos import delf_config_pb2


@dataclasses.dataclass(frozen=True)
class PcaParameters:
    """A learned PCA: mean [D], projection matrix [D', D] (rows = components), variances."""

    mean: np.ndarray
    projection: np.ndarray
    variances: np.ndarray | None = None


def load_pca_parameters(params: delf_config_pb2.DelfPcaParameters) -> PcaParameters:
    """Reads the .datum files a DelfPcaParameters message names.

    The variances are read when `pca_variances_path` is set; they are required with
    `use_whitening`.

    Args:
      params: the message (paths are local paths or URLs, as written).

    Returns:
      PcaParameters with the mean flattened to [D] and the variances squeezed to [D'].

    Raises:
      ValueError: naming the file or field at fault.
    """
    if not params.mean_path or not params.projection_matrix_path:
        raise ValueError("pca_parameters needs mean_path and projection_matrix_path")
    if params.use_whitening and not params.pca_variances_path:
        raise ValueError("pca_parameters.use_whitening is true but pca_variances_path is unset")
    mean = datum_io.read_from_file(params.mean_path).astype(np.float32).reshape(-1)
    projection = datum_io.read_from_file(params.projection_matrix_path).astype(np.float32)
    if projection.ndim != 2 or projection.shape[1] != mean.size:
        raise ValueError(
            f"{params.projection_matrix_path}: projection matrix has shape "
            f"{list(projection.shape)}, expected [K, {mean.size}] for the mean in "
            f"{params.mean_path}"
        )
    variances = None
    if params.pca_variances_path:
        variances = np.squeeze(datum_io.read_from_file(params.pca_variances_path)).astype(
            np.float32
        )
    return PcaParameters(mean=mean, projection=projection, variances=variances)


def apply_pca_and_whitening(
    data: np.ndarray, params: PcaParameters, pca_dim: int, use_whitening: bool = False
) -> np.ndarray:
    """Projects descriptors on the first `pca_dim` components, optionally whitened.

    out = (x - mean) · P[:pca_dim, :]ᵀ; whitening divides each output dimension k by
    sqrt(variances[k]).

    Args:
      data: [N, D] descriptors (or one [D] descriptor).
      params: the PCA.
      pca_dim: number of components kept.
      use_whitening: divide by the square root of the component variances.

    Returns:
      float32 [N, pca_dim] (or [pca_dim] for a single descriptor).

    Raises:
      ValueError: on mismatched sizes, or whitening without variances.
    """
    data = np.asarray(data, dtype=np.float32)
    if data.shape[-1] != params.mean.size:
        raise ValueError(
            f"descriptors have {data.shape[-1]} dimensions but the PCA mean has {params.mean.size}"
        )
    if not 0 < pca_dim <= params.projection.shape[0]:
        raise ValueError(f"pca_dim must be in 1..{params.projection.shape[0]}, got {pca_dim}")
    out = (data - params.mean) @ params.projection[:pca_dim].T
    if use_whitening:
        if params.variances is None or params.variances.size < pca_dim:
            raise ValueError(f"whitening to {pca_dim} dimensions needs {pca_dim} variances")
        out = out / np.sqrt(params.variances[:pca_dim])
    return out.astype(np.float32)
