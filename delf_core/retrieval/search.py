"""Global search: descriptors read from `.delg_global` files, ranked by dot product."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from delf_core.features import datum_io, feature_io
from delf_core.features.feature_io import LocalFeatures
from delf_core.features.naming import DELG_GLOBAL_SUFFIX, DELG_LOCAL_SUFFIX, child_path


def _read_all(function, paths: Sequence) -> list:
    # Many small files, often on gs://: read them concurrently.
    with ThreadPoolExecutor(min(32, (os.cpu_count() or 1) * 8)) as pool:
        return list(pool.map(function, paths))


def read_global_descriptor(path: str) -> np.ndarray:
    """The float [D] descriptor of a `.delg_global` file.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming `path`: not a DatumProto, not a float vector, or NaN/infinite
            values.
    """
    descriptor = datum_io.read_from_file(path)
    if descriptor.dtype != np.float32 or descriptor.ndim != 1 or not descriptor.size:
        raise ValueError(
            f"{path}: not a global descriptor: a {descriptor.dtype} array of shape "
            f"{list(descriptor.shape)}, where extract_features writes float [D]"
        )
    if not np.all(np.isfinite(descriptor)):
        raise ValueError(f"{path}: the global descriptor holds NaN or infinite values")
    return descriptor


def global_descriptors(features_dir: str, names: Sequence[str]) -> np.ndarray:
    """[len(names), D] descriptors of `<features_dir>/<name>.delg_global`.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: naming the first file that is not a descriptor, or whose size
            differs from the first file's.
    """
    paths = [child_path(features_dir, name, DELG_GLOBAL_SUFFIX, features_dir) for name in names]
    descriptors = _read_all(read_global_descriptor, paths)
    for path, descriptor in zip(paths, descriptors, strict=True):
        if descriptor.shape != descriptors[0].shape:
            raise ValueError(
                f"{path}: a global descriptor of {descriptor.size} values, but {paths[0]} has "
                f"{descriptors[0].size} (features of another model?)"
            )
    return np.stack(descriptors).astype(np.float32)


def local_features_reader(
    features_dir: str, names: Sequence[str], descriptor_dim: int | None = None
):
    """A function id -> LocalFeatures of `<features_dir>/<names[id]>.delg_local`.

    Args:
        features_dir: The folder.
        names: Image names, by id.
        descriptor_dim: When set, a file with descriptors of another size is an error
            naming it (rather than a failure deep in matching).
    """

    def read(image_id: int) -> LocalFeatures:
        path = child_path(features_dir, names[image_id], DELG_LOCAL_SUFFIX, features_dir)
        features = feature_io.read_from_file(path)
        dim = features.descriptors.shape[1]
        if descriptor_dim is not None and len(features.descriptors) and dim != descriptor_dim:
            raise ValueError(
                f"{path}: local descriptors of {dim} values, but the queries' have "
                f"{descriptor_dim} (features of another model?)"
            )
        return features

    return read


def read_local_features(features_dir: str, names: Sequence[str]) -> list[LocalFeatures]:
    """Every `<features_dir>/<name>.delg_local`, read concurrently.

    Raises:
        ValueError: naming the first unreadable file, or the first whose descriptor size
            differs from the others'.
    """
    features = _read_all(local_features_reader(features_dir, names), range(len(names)))
    descriptor_dim(features, features_dir, names)
    return features


def descriptor_dim(
    features: Sequence[LocalFeatures], features_dir: str, names: Sequence[str]
) -> int | None:
    """The descriptor size all non-empty `features` share; None when all are empty.

    Raises:
        ValueError: naming the first file whose size differs from the first non-empty one's.
    """
    dim, first = None, None
    for name, image in zip(names, features, strict=True):
        if not len(image.descriptors):
            continue
        if dim is None:
            dim, first = image.descriptors.shape[1], name
        elif image.descriptors.shape[1] != dim:
            path = child_path(features_dir, name, DELG_LOCAL_SUFFIX, features_dir)
            raise ValueError(
                f"{path}: local descriptors of {image.descriptors.shape[1]} values, but "
                f"{first}{DELG_LOCAL_SUFFIX} has {dim} (features of another model?)"
            )
    return dim
