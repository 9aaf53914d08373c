"""Revisited Oxford/Paris dataset files (`gnd_*.mat` or `gnd_*.pkl`): image lists and truth.

These files come from the web, so they are read as untrusted: a `.pkl` by an unpickler
that builds only containers, strings, numbers and NumPy arrays (plain `pickle.loads`
runs whatever code a crafted file names); image names must stay inside the folders
they are joined to; ground-truth indices must name images of the list.
"""

from __future__ import annotations

import _codecs
import dataclasses
import io
import pickle
from collections.abc import Sequence

import numpy as np

from delf_core import storage
from delf_core.names import check_name

GROUND_TRUTH_KEYS = ("easy", "hard", "junk")
# Index lists an entry may also hold (the non-revisited Oxford/Paris files' `ok`):
# checked like the others, not used.
_INDEX_KEYS = (*GROUND_TRUTH_KEYS, "ok")
_BOX_KEY = "bbx"
_NAME_KEYS = ("qimlist", "imlist", "gnd")


def _numpy_globals() -> dict[str, object]:
    """NumPy's array and scalar rebuilders, found from the objects (their module moved in 2.0)."""
    return {
        "_reconstruct": np.zeros(0).__reduce__()[0],
        "scalar": np.float64(0).__reduce__()[0],
        "_frombuffer": np.zeros(1).__reduce_ex__(5)[0],
    }


def _allowed_globals() -> dict[tuple[str, str], object]:
    """Everything a ground-truth pickle may name: what the real files and NumPy need."""
    allowed: dict[tuple[str, str], object] = {}
    for module in ("builtins", "__builtin__"):  # protocol 2 writes the Python 2 name
        for kind in (set, frozenset, bytes, bytearray, complex):
            allowed[(module, kind.__name__)] = kind
    allowed[("_codecs", "encode")] = _codecs.encode  # bytes, as protocol 2 writes them
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    rebuilders = _numpy_globals()
    for package in ("numpy.core", "numpy._core"):
        for module, name in (("multiarray", "_reconstruct"), ("multiarray", "scalar"),
                             ("numeric", "_frombuffer")):  # fmt: skip
            allowed[(f"{package}.{module}", name)] = rebuilders[name]
    return allowed


_ALLOWED_GLOBALS = _allowed_globals()


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle named a function or class that ground truth never holds."""


class _GroundTruthUnpickler(pickle.Unpickler):
    """Builds lists, dicts, strings, numbers and NumPy arrays, and refuses anything else."""

    def find_class(self, module: str, name: str) -> object:
        try:
            return _ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise _RefusedGlobal(f"{module}.{name}") from None


def load_pickle(data: bytes, source: str) -> object:
    """Unpickles `data` allowing only what a ground-truth file holds; nothing else runs.

    Args:
        data: The bytes of a `.pkl` file.
        source: Its path, for the error.

    Returns:
        The unpickled object.

    Raises:
        ValueError: one line naming `source`: empty, not a pickle, or a pickle that names
            a function or class outside containers, numbers, strings and NumPy arrays.
    """
    if not data:
        raise ValueError(f"{source}: empty file, not a Revisited ground-truth pickle")
    try:
        # latin1: Python 2 pickles of NumPy arrays hold their bytes as str.
        return _GroundTruthUnpickler(io.BytesIO(data), encoding="latin1").load()
    except _RefusedGlobal as error:
        raise ValueError(
            f"{source}: refused to load: the pickle calls {error}, which a ground-truth file "
            "never holds (a crafted file?); use the dataset's own gnd_*.pkl or .mat"
        ) from None
    except Exception as error:  # noqa: BLE001 - any damage to untrusted bytes is one line
        raise ValueError(
            f"{source}: not a readable pickle ({type(error).__name__}: {error})"
        ) from None


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


def _names(values: object, key: str, path: str) -> list[str]:
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        raise ValueError(f"{path}: '{key}' is a {type(values).__name__}, not a list of names")
    return [check_name(name, f"{path}: '{key}'") for name in values]


def _indices(values: object, where: str, offset: int = 0) -> np.ndarray:
    """0-based int64 positions; `offset` is subtracted (1 for MATLAB's 1-based lists)."""
    try:
        if isinstance(values, set | frozenset):
            values = sorted(values)
        array = np.asarray(values).ravel()
    except (ValueError, TypeError) as error:
        raise ValueError(f"{where}: not a list of image positions ({error})") from None
    if array.size == 0:
        return np.zeros(0, np.int64)
    if array.dtype.kind == "f":
        if not np.all(np.isfinite(array)) or np.any(array != np.round(array)):
            raise ValueError(f"{where}: image positions must be whole numbers")
    elif array.dtype.kind not in "iu":
        raise ValueError(f"{where}: image positions must be integers, got {array.dtype}")
    return array.astype(np.int64) - offset


def _entry(raw: object, offset: int, where: str) -> dict[str, np.ndarray]:
    if not hasattr(raw, "__getitem__") or isinstance(raw, str | bytes):
        raise ValueError(f"{where}: a ground-truth entry must map 'easy', 'hard', 'junk', 'bbx'")

    def field(key: str) -> object:
        try:
            return raw[key]
        except (KeyError, ValueError, IndexError, TypeError):
            return None

    entry = {}
    for key in _INDEX_KEYS:
        values = field(key)
        if values is None and key in GROUND_TRUTH_KEYS:
            raise ValueError(f"{where}: no '{key}' list")
        if values is not None:
            entry[key] = _indices(values, f"{where}: '{key}'", offset)
    box = field(_BOX_KEY)
    try:
        box = np.asarray(box, np.float64).ravel()
    except (ValueError, TypeError):
        box = np.zeros(0)
    if box.shape != (4,) or not np.all(np.isfinite(box)):
        raise ValueError(f"{where}: 'bbx' must be 4 numbers [x1, y1, x2, y2]")
    entry[_BOX_KEY] = box
    return entry


def _ground_truth(
    entries: Sequence[object], queries: list[str], num_index: int, offset: int, path: str
) -> list[dict[str, np.ndarray]]:
    """The checked entries: every index list names an image of `imlist`."""
    if len(entries) != len(queries):
        raise ValueError(f"{path}: {len(queries)} queries but {len(entries)} ground-truth entries")
    ground_truth = []
    for i, (raw, query) in enumerate(zip(entries, queries, strict=True)):
        where = f"{path}: query {i} ({query})"
        entry = _entry(raw, offset, where)
        for key in _INDEX_KEYS:
            values = entry.get(key, np.zeros(0, np.int64))
            outside = values[(values < 0) | (values >= num_index)]
            if outside.size:
                # Reported as the file writes it (1-based in a .mat).
                raise ValueError(
                    f"{where}: '{key}' lists image {int(outside[0]) + offset}, outside the "
                    f"{num_index} images of imlist ({offset}..{num_index - 1 + offset}): "
                    "a ground-truth file of another dataset?"
                )
        ground_truth.append(entry)
    return ground_truth


def _require_keys(raw: dict, path: str) -> None:
    missing = [key for key in _NAME_KEYS if key not in raw]
    if missing:
        raise ValueError(
            f"{path}: not a Revisited ground-truth file: no '{missing[0]}' "
            "(one of qimlist, imlist, gnd)"
        )


def _from_mat(data: bytes, path: str) -> RevisitedDataset:
    from scipy import io as scipy_io

    try:
        mat = scipy_io.loadmat(io.BytesIO(data))
    except Exception as error:  # noqa: BLE001 - any damage to untrusted bytes is one line
        raise ValueError(
            f"{path}: not a readable .mat file ({type(error).__name__}: {error})"
        ) from None
    _require_keys(mat, path)
    names = {key: [str(np.squeeze(item)) for item in np.ravel(mat[key])] for key in _NAME_KEYS[:2]}
    queries = _names(names["qimlist"], "qimlist", path)
    index = _names(names["imlist"], "imlist", path)
    # MATLAB indices are 1-based.
    truth = _ground_truth(list(np.ravel(mat["gnd"])), queries, len(index), 1, path)
    return RevisitedDataset(queries, index, truth)


def _from_pickle(data: bytes, path: str) -> RevisitedDataset:
    raw = load_pickle(data, path)
    if not isinstance(raw, dict):
        raise ValueError(
            f"{path}: not a Revisited ground-truth file: it holds a {type(raw).__name__}, "
            "not a dict of qimlist, imlist and gnd"
        )
    _require_keys(raw, path)
    queries = _names(raw["qimlist"], "qimlist", path)
    index = _names(raw["imlist"], "imlist", path)
    entries = raw["gnd"]
    if isinstance(entries, str | bytes | dict) or not isinstance(entries, Sequence | np.ndarray):
        raise ValueError(f"{path}: 'gnd' is a {type(entries).__name__}, not a list per query")
    return RevisitedDataset(queries, index, _ground_truth(entries, queries, len(index), 0, path))


def read_dataset_file(path: str) -> RevisitedDataset:
    """Reads a Revisited Oxford/Paris ground-truth file, `.mat` or `.pkl`, as untrusted.

    Args:
        path: A local path or URL of `gnd_roxford5k.mat`, `gnd_rparis6k.pkl`, ...

    Returns:
        The dataset, with 0-based indices whichever the format.

    Raises:
        ValueError: one line naming the file (and query or name): neither format, a
            pickle that would run code, a missing `imlist`/`qimlist`/`gnd`, an image
            name that leaves its folder, an index outside `imlist`, a bad box.
    """
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        data = handle.read()
    if not data:
        raise ValueError(f"{path}: empty file, not a Revisited ground-truth file (.mat or .pkl)")
    return _from_pickle(data, path) if path.endswith(".pkl") else _from_mat(data, path)
