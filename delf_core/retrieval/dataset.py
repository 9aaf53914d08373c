"""Revisited Oxford/Paris dataset files (`gnd_*.mat` or `gnd_*.pkl`): image lists and truth."""

from __future__ import annotations

import dataclasses
import io
import pickle

import numpy as np

from delf_core import storage

GROUND_TRUTH_KEYS = ("easy", "hard", "junk")


@dataclasses.dataclass(frozen=True)
class RevisitedDataset:
    """The query and index image names and, per query, its ground truth.

    Attributes:
        query_list: Query image names, without extension.
        index_list: Index (database) image names, without extension.
        ground_truth: Per query, `easy`, `hard` and `junk` as 0-based int arrays of
            index positions, and `bbx` as float [x1, y1, x2, y2].
    """

    query_list: list[str]
    index_list: list[str]
    ground_truth: list[dict[str, np.ndarray]]

    def images(self, image_set: str) -> list[str]:
        """`query_list` for "query", `index_list` for "index"."""
        if image_set == "query":
            return self.query_list
        if image_set == "index":
            return self.index_list
        raise ValueError(f"image_set must be 'query' or 'index', got {image_set!r}")


def _from_mat(data: bytes) -> RevisitedDataset:
    from scipy import io as scipy_io

    mat = scipy_io.loadmat(io.BytesIO(data))
    names = lambda key: [str(np.squeeze(item)) for item in np.ravel(mat[key])]  # noqa: E731
    ground_truth = []
    for raw in np.ravel(mat["gnd"]):
        # MATLAB indices are 1-based.
        entry = {key: np.ravel(raw[key]).astype(np.int64) - 1 for key in GROUND_TRUTH_KEYS}
        entry["bbx"] = np.ravel(raw["bbx"]).astype(np.float64)
        ground_truth.append(entry)
    return RevisitedDataset(names("qimlist"), names("imlist"), ground_truth)


def _from_pickle(data: bytes) -> RevisitedDataset:
    raw = pickle.loads(data)
    ground_truth = [
        {
            **{key: np.asarray(entry[key], np.int64).ravel() for key in GROUND_TRUTH_KEYS},
            "bbx": np.asarray(entry["bbx"], np.float64).ravel(),
        }
        for entry in raw["gnd"]
    ]
    return RevisitedDataset(list(raw["qimlist"]), list(raw["imlist"]), ground_truth)


def read_dataset_file(path: str) -> RevisitedDataset:
    """Reads a Revisited Oxford/Paris ground-truth file, `.mat` or `.pkl`.

    Args:
        path: A local path or URL of `gnd_roxford5k.mat`, `gnd_rparis6k.pkl`, ...

    Returns:
        The dataset, with 0-based indices whichever the format.

    Raises:
        ValueError: The file is neither format, or lacks `imlist`, `qimlist` or `gnd`.
    """
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        data = handle.read()
    try:
        dataset = _from_pickle(data) if path.endswith(".pkl") else _from_mat(data)
    except (KeyError, ValueError, TypeError, pickle.UnpicklingError) as error:
        raise ValueError(
            f"{path}: not a Revisited Oxford/Paris dataset file (.mat or .pkl with imlist, "
            f"qimlist and gnd): {error}"
        ) from error
    if len(dataset.ground_truth) != len(dataset.query_list):
        raise ValueError(
            f"{path}: {len(dataset.query_list)} queries but {len(dataset.ground_truth)} "
            "ground-truth entries"
        )
    return dataset
