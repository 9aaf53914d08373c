"""Many `.delg_global` files as one memory-mapped float32 [N, D] matrix, cached on disk.

A GLDv2 index is 761,757 small files: read one by one for every search, they cost
minutes (hours on gs://). They are read once, concurrently, into one raw float32 file
with a JSON sidecar naming what it was made from (the names, and each file's size and
modification time). A rerun over the same files maps the matrix and reads none of them;
a changed, added or removed file rebuilds it. The matrix is read back a block of rows
at a time, each block mapped only while it is copied out, so a search over a 6 GB
index holds one block in memory, not the file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import mmap
import os
import re
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from delf_core import storage
from delf_core.features.naming import DELG_GLOBAL_SUFFIX, child_path
from delf_core.names import check_name
from delf_core.progress import ProgressTracker, log_progress
from delf_core.retrieval.search import read_global_descriptor

log = logging.getLogger(__name__)

# Inside the features folder, hidden and matching no feature file pattern (`*.delg_*`):
# `.descriptor_matrix.<role>.f32`, one per role, so test and index images sharing a
# folder keep a matrix each.
MATRIX_NAME = ".descriptor_matrix"
DEFAULT_ROLE = "rows"
_ROLE = re.compile(r"[a-z0-9_]+")
SIDECAR_SUFFIX = ".json"
FORMAT = "delg_global_matrix"
FORMAT_VERSION = 1
# Where the matrices of gs:// (or other remote) features go when no cache folder is given.
DEFAULT_REMOTE_CACHE_DIR = os.path.join("~", ".cache", "delf", "descriptor_matrix")
DEFAULT_NUM_THREADS = 16
# Rows read before they are written out: 4096 x 2048 floats is 32 MB in flight.
DEFAULT_CHUNK_ROWS = 4096
_DTYPE = np.dtype("<f4")

Progress = Callable[[int, int], None]


class DescriptorMatrix:
    """A `Rows` view of a cached matrix file: `[start:stop]` maps and copies those rows only.

    The file stays open: a rebuild by another run replaces the name, not the rows this
    view reads.

    Attributes:
        path: The raw float32 file (row-major, little-endian, no header).
    """

    def __init__(self, path: str, rows: int, dim: int) -> None:
        self.path = path
        self._rows, self._dim = rows, dim
        self._handle = open(path, "rb")  # noqa: SIM115  (held for the view's life)

    def close(self) -> None:
        self._handle.close()

    def __del__(self) -> None:
        handle = getattr(self, "_handle", None)
        if handle is not None:
            handle.close()

    @property
    def shape(self) -> tuple[int, int]:
        return self._rows, self._dim

    def __len__(self) -> int:
        return self._rows

    def __getitem__(self, rows: slice) -> np.ndarray:
        """The rows of `rows` (a slice without step) as a new float32 array."""
        if not isinstance(rows, slice) or rows.step not in (None, 1):
            raise TypeError(f"a DescriptorMatrix is read by slices of rows, not {rows!r}")
        start, stop, _ = rows.indices(self._rows)
        stop = max(start, stop)
        out = np.empty((stop - start, self._dim), np.float32)
        if stop == start:
            return out
        row_bytes = self._dim * _DTYPE.itemsize
        first, end = start * row_bytes, stop * row_bytes
        # mmap offsets must be multiples of the allocation granularity.
        aligned = first - first % mmap.ALLOCATIONGRANULARITY
        with mmap.mmap(
            self._handle.fileno(), end - aligned, access=mmap.ACCESS_READ, offset=aligned
        ) as mapped:
            if hasattr(mapped, "madvise"):
                mapped.madvise(mmap.MADV_SEQUENTIAL)
            view = np.frombuffer(mapped, _DTYPE, (stop - start) * self._dim, first - aligned)
            out[...] = view.reshape(out.shape)
            del view  # the mapping closes only once no array points into it
        return out


def cache_path(features_dir: str, cache_dir: str | None = None, role: str = DEFAULT_ROLE) -> str:
    """Where the matrix of `features_dir`'s `role` images is cached: a local path.

    Local features keep it inside their folder; remote ones (gs://) in
    `DEFAULT_REMOTE_CACHE_DIR`; a given `cache_dir` holds one file per features folder
    and role, named after the folder's absolute path or URL.

    Raises:
        ValueError: `cache_dir` is not a local path, or a role other than [a-z0-9_]+.
    """
    if not _ROLE.fullmatch(role):
        raise ValueError(f"role {role!r}: use lower-case letters, digits and _")
    name = f"{MATRIX_NAME}.{role}.f32"
    fs, path = storage.resolve(features_dir)
    located = os.path.abspath(path) if storage.is_local(fs) else storage.url_of(fs, path)
    if not cache_dir and storage.is_local(fs):
        return os.path.join(located, name)
    folder = os.path.expanduser(cache_dir or DEFAULT_REMOTE_CACHE_DIR)
    if not storage.is_local(storage.resolve(folder)[0]):
        raise ValueError(f"--cache_dir={cache_dir}: the descriptor cache must be a local folder")
    digest = hashlib.sha256(located.encode()).hexdigest()[:16]
    base = located.rstrip("/").rsplit("/", 1)[-1] or "features"
    return os.path.join(os.path.abspath(folder), f"{base}-{digest}{name}")


def _local_stamps(paths: Sequence[str]) -> Iterator[tuple[int, str]]:
    for path in paths:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no such global descriptor file") from None
        yield info.st_size, str(info.st_mtime_ns)


# What says when a remote object last changed: the filesystems name it differently.
_CHANGED_KEYS = ("mtime", "updated", "LastModified", "generation", "created")


def _changed(info: dict) -> str:
    return next((str(info[key]) for key in _CHANGED_KEYS if info.get(key) is not None), "")


def _remote_stamps(fs, root: str, names: Sequence[str]) -> Iterator[tuple[int, str]]:
    # One listing rather than a request per file; a folder's details at a time.
    found: dict[str, tuple[int, str]] = {}
    for folder, _, files in fs.walk(root, detail=True):
        for name, info in files.items():
            if not name.endswith(DELG_GLOBAL_SUFFIX):
                continue
            relative = f"{folder}/{name}"[len(root) :].lstrip("/")
            found[relative] = (int(info.get("size") or 0), _changed(info))
    for name in names:
        stamp = found.get(name + DELG_GLOBAL_SUFFIX)
        if stamp is None:
            path = storage.url_of(fs, f"{root}/{name}{DELG_GLOBAL_SUFFIX}")
            raise FileNotFoundError(f"{path}: no such global descriptor file")
        yield stamp


def inputs_fingerprint(features_dir: str, names: Sequence[str]) -> str:
    """sha256 of the names, in order, and each file's size and modification time.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: a name that would leave `features_dir` (as `child_path`).
    """
    fs, root = storage.resolve(features_dir)
    root = root.rstrip("/")
    # Checked, then joined by hand: resolving 761k URLs one by one would cost a minute.
    checked = [check_name(name, features_dir) for name in names]
    if storage.is_local(fs):
        stamps = _local_stamps([f"{root}/{name}{DELG_GLOBAL_SUFFIX}" for name in checked])
    else:
        stamps = _remote_stamps(fs, root, checked)
    digest = hashlib.sha256()
    for name, (size, changed) in zip(names, stamps, strict=True):
        digest.update(f"{name}\0{size}\0{changed}\n".encode())
    return digest.hexdigest()


def _sidecar(path: str) -> str:
    return path + SIDECAR_SUFFIX


def _cached(path: str, fingerprint: str, rows: int) -> DescriptorMatrix | None:
    """The matrix at `path` when its sidecar vouches for these inputs, else None."""
    fs = storage.resolve(path)[0]
    try:
        info = storage.read_json(fs, _sidecar(path))
    except ValueError:  # not JSON: not ours to trust
        return None
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        return None
    dim = info.get("dim")
    if (
        info.get("version") != FORMAT_VERSION
        or info.get("fingerprint") != fingerprint
        or info.get("rows") != rows
        or not isinstance(dim, int)
        or dim < 1
    ):
        return None
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    if size != rows * dim * _DTYPE.itemsize:
        return None
    return DescriptorMatrix(path, rows, dim)


def _logged(total: int, on_progress: Progress | None) -> Progress:
    tracker = ProgressTracker(total, "descriptor files")

    def report(done: int, total: int) -> None:
        if tracker.update(done):
            log_progress("read_global_descriptors", tracker.snapshot().describe())
        if on_progress is not None:
            on_progress(done, total)

    return report


def _write_rows(
    handle, paths: Sequence[str], num_threads: int, chunk_rows: int, progress: Progress
) -> int:
    """Reads every path concurrently, a chunk at a time, appending rows to `handle`.

    Returns:
        The descriptor size.
    """
    dim = None
    with ThreadPoolExecutor(num_threads) as pool:
        for start in range(0, len(paths), chunk_rows):
            chunk = paths[start : start + chunk_rows]
            # map keeps the order; only this chunk's arrays are alive at once.
            for path, descriptor in zip(chunk, pool.map(_read_one, chunk), strict=True):
                if dim is None:
                    dim, first = descriptor.size, path
                elif descriptor.size != dim:
                    raise ValueError(
                        f"{path}: a global descriptor of {descriptor.size} values, but {first} "
                        f"has {dim} (features of another model?)"
                    )
                handle.write(np.ascontiguousarray(descriptor, _DTYPE).tobytes())
            progress(start + len(chunk), len(paths))
    return dim


def _read_one(path: str) -> np.ndarray:
    try:
        return read_global_descriptor(path)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such global descriptor file") from None


def build_matrix(
    paths: Sequence[str],
    path: str,
    fingerprint: str,
    num_threads: int = DEFAULT_NUM_THREADS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Progress | None = None,
) -> DescriptorMatrix:
    """Reads `paths` into the matrix file `path` and its sidecar, whole or not at all.

    Raises:
        FileNotFoundError, ValueError: naming the first missing, damaged or
            differently sized file; no matrix and no sidecar are left then.
    """
    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    # Whatever stood here stops being a cache before anything is written.
    for stale in (_sidecar(path), path):
        with contextlib.suppress(FileNotFoundError):
            os.remove(stale)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex[:8]}.tmp")
    progress = _logged(len(paths), on_progress)
    try:
        with open(tmp, "wb") as handle:
            dim = _write_rows(handle, paths, num_threads, chunk_rows, progress)
        storage.durable_replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
    fs = storage.resolve(path)[0]
    # Last: it vouches for a matrix that is all there.
    storage.write_json(
        fs,
        _sidecar(path),
        {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "rows": len(paths),
            "dim": dim,
            "dtype": "float32",
            "fingerprint": fingerprint,
        },
    )
    return DescriptorMatrix(path, len(paths), dim)


def descriptor_matrix(
    features_dir: str,
    names: Sequence[str],
    cache_dir: str | None = None,
    num_threads: int = DEFAULT_NUM_THREADS,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    on_progress: Progress | None = None,
    role: str = DEFAULT_ROLE,
) -> DescriptorMatrix:
    """The [len(names), D] matrix of `<features_dir>/<name>.delg_global`, cached.

    Args:
        features_dir: Local path or URL of the features.
        names: Image names, in row order (they may hold folders: `a/b/c/<id>`).
        cache_dir: Local folder for the matrix; None: see `cache_path`.
        num_threads: Files read at once.
        chunk_rows: Rows read before they are written out (bounds memory).
        on_progress: Called with (files read, files) while the matrix is built.
        role: Which images of the folder (`test`, `index`): one cached matrix each.

    Returns:
        The matrix, built now or found current.

    Raises:
        FileNotFoundError: naming the first missing file.
        ValueError: no names, a name leaving `features_dir`, or a damaged file or one
            of another size (named).
    """
    if not names:
        raise ValueError(f"{features_dir}: no images to read global descriptors of")
    if num_threads < 1 or chunk_rows < 1:
        raise ValueError("num_threads and chunk_rows must be at least 1")
    path = cache_path(features_dir, cache_dir, role)
    fingerprint = inputs_fingerprint(features_dir, names)
    found = _cached(path, fingerprint, len(names))
    if found is not None:
        log.info("%s: %d x %d descriptors from the cache %s", features_dir, *found.shape, path)
        return found
    started = time.monotonic()
    paths = [child_path(features_dir, name, DELG_GLOBAL_SUFFIX, features_dir) for name in names]
    matrix = build_matrix(paths, path, fingerprint, num_threads, chunk_rows, on_progress)
    log.info(
        "%s: read %d x %d descriptors in %.1f s, cached in %s",
        features_dir,
        *matrix.shape,
        time.monotonic() - started,
        path,
    )
    return matrix
