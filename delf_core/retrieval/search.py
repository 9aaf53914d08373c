"""Global search: descriptors read from `.delg_global` files, ranked by dot product."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from delf_core import storage
from delf_core.features import datum_io, feature_io
from delf_core.features.feature_io import LocalFeatures
from delf_core.features.naming import DELG_GLOBAL_SUFFIX, DELG_LOCAL_SUFFIX


def _read_all(function, paths: Sequence[str]) -> list:
    # Many small files, often on gs://: read them concurrently.
    with ThreadPoolExecutor(min(32, (os.cpu_count() or 1) * 8)) as pool:
        return list(pool.map(function, paths))


def global_descriptors(features_dir: str, names: Sequence[str]) -> np.ndarray:
    """[len(names), D] descriptors of `<features_dir>/<name>.delg_global`.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: when the descriptors do not all have the same size.
    """
    paths = [storage.join(features_dir, name + DELG_GLOBAL_SUFFIX) for name in names]
    descriptors = _read_all(datum_io.read_from_file, paths)
    sizes = {d.shape for d in descriptors}
    if len(sizes) > 1:
        raise ValueError(f"{features_dir}: global descriptors of different shapes {sorted(sizes)}")
    return np.stack(descriptors).astype(np.float32)


def local_features_reader(features_dir: str, names: Sequence[str]):
    """A function id -> LocalFeatures of `<features_dir>/<names[id]>.delg_local`."""

    def read(image_id: int) -> LocalFeatures:
        return feature_io.read_from_file(
            storage.join(features_dir, names[image_id] + DELG_LOCAL_SUFFIX)
        )

    return read


def read_local_features(features_dir: str, names: Sequence[str]) -> list[LocalFeatures]:
    """Every `<features_dir>/<name>.delg_local`, read concurrently."""
    return _read_all(local_features_reader(features_dir, names), range(len(names)))


def rank_by_similarity(queries: np.ndarray, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Index ids by descending dot product per query, and the [Q, N] similarities.

    The descriptors are L2-normalised, so the dot product is the cosine similarity.
    """
    similarities = queries @ index.T
    ranks = np.argsort(-similarities, axis=1, kind="stable").astype(np.int32)
    return ranks, similarities
