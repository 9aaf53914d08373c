"""The GLDv2 retrieval challenge's submission: the top-100 index images of each test image.

Test and index image ids come from the dataset's `test.csv` and `index.csv` (column
`id`); each image's global descriptor from `<features_dir>/<name>.delg_global`. The
descriptors are cached as memory-mapped matrices (descriptor_matrix) and searched in
bounded memory (top_k), so the 117,577 x 761,757 case never builds the similarity
matrix. The CSV is what `delf compute_retrieval_metrics` and the Kaggle challenge read:
header `id,images`, then `<test id>,<index id> <index id> ...`, best first.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import re
import time
from collections.abc import Callable, Sequence

import numpy as np

from delf_core import manifests, storage
from delf_core.gldv2 import layout
from delf_core.names import check_name
from delf_core.progress import ProgressTracker, log_progress
from delf_core.retrieval import gldv2_metrics as gm
from delf_core.retrieval.descriptor_matrix import (
    DEFAULT_NUM_THREADS,
    descriptor_matrix,
    inputs_fingerprint,
)
from delf_core.retrieval.top_k import DEFAULT_MEMORY_BYTES, TopK, top_k_by_similarity
from delf_core.step_config import option

log = logging.getLogger(__name__)

# How a features folder names an image's files: `a/b/c/<id>` as `extract_features`
# writes them from `make_revisited_ground_truth`'s file (and the gldv2 flow), or `<id>`.
SPLIT_LAYOUT, FLAT_LAYOUT = "split", "flat"
SUBMISSION_COLUMNS = ("id", gm.ANSWER_COLUMN[gm.RETRIEVAL])
# What would break a CSV field or the space-separated list of ids, or make an id a path.
_NOT_IN_AN_ID = re.compile(r"[\s,\"'/\\\x00-\x1f]")
# The ranks the summaries show mean precision at, as compute_retrieval_metrics prints.
PRINTED_RANKS = (1, 5, 10, 50, 100)
# Beside the CSV, written last: what it was made from, so a rerun of the same keeps it.
MANIFEST_SUFFIX = ".manifest.json"
# The flags the CSV depends on (threads, memory and cache change how, not what).
_OUTPUT_FLAGS = (
    "test_csv_path",
    "index_csv_path",
    "test_features_dir",
    "index_features_dir",
    "features_layout",
    "output_path",
    "k",
)


@dataclasses.dataclass(frozen=True)
class RetrievalSubmissionConfig:
    """The flags of `delf make_retrieval_submission`."""

    test_csv_path: str = option(
        f"{layout.DEFAULT_DATASET_DIR}/test/test.csv",
        "GLDv2 test.csv: one submission row per id, in its order",
    )
    index_csv_path: str = option(
        f"{layout.DEFAULT_DATASET_DIR}/index/index.csv",
        "GLDv2 index.csv: the index images ranked",
    )
    test_features_dir: str = option("/tmp/features/test", "holds each test image's .delg_global")
    index_features_dir: str = option("/tmp/features/index", "holds each index image's .delg_global")
    features_layout: str = option(
        SPLIT_LAYOUT,
        "file names under the features folders: split (a/b/c/<id>.delg_global, as "
        "extract_features writes from make_revisited_ground_truth) or flat (<id>.delg_global)",
        choices=(SPLIT_LAYOUT, FLAT_LAYOUT),
    )
    output_path: str = option(
        "/tmp/predictions.csv", "the submission CSV (id,images); local path or gs://"
    )
    k: int = option(gm.MAX_PREDICTIONS, "index ids per test image", minimum=1)
    search_memory_bytes: int = option(
        DEFAULT_MEMORY_BYTES,
        "bound on the search's working memory, whatever the index size",
        minimum=1,
    )
    cache_dir: str = option(
        "",
        "local folder for the descriptor matrices; empty: inside each local features "
        "folder, or ~/.cache/delf/descriptor_matrix for gs:// features",
    )
    num_threads: int = option(DEFAULT_NUM_THREADS, "descriptor files read at once", minimum=1)


@dataclasses.dataclass(frozen=True)
class SubmissionResult:
    """What `write_submission` wrote.

    Attributes:
        path: The CSV.
        test_ids, index_ids: Its rows' ids and the ids ranked.
        top: Per test image (row order), the index rows (into `index_ids`) and their
            similarities, best first.
        timings: Seconds each stage took.
    """

    path: str
    test_ids: list[str]
    index_ids: list[str]
    top: TopK
    timings: dict[str, float]


def feature_name(image_id: str, features_layout: str) -> str:
    """The name of an image's files under a features folder (no suffix)."""
    if features_layout == SPLIT_LAYOUT:
        return layout.image_relpath(image_id, extension="")
    if features_layout == FLAT_LAYOUT:
        return image_id
    raise ValueError(f"features_layout {features_layout!r}: use {SPLIT_LAYOUT} or {FLAT_LAYOUT}")


def check_image_id(image_id: str, features_layout: str, where: str) -> str:
    """`image_id` when it can be a submission field and names a file inside its folder.

    Raises:
        ValueError: naming `where` (file and line) and the id.
    """
    bad = _NOT_IN_AN_ID.search(image_id)
    if not image_id or bad:
        reason = "is empty" if not image_id else f"holds {bad.group()!r}"
        raise ValueError(f"{where}: image id {image_id!r} {reason}; fix the file")
    if features_layout == SPLIT_LAYOUT and len(image_id) < 3:
        raise ValueError(f"{where}: image id {image_id!r} is too short for the a/b/c/ layout")
    check_name(feature_name(image_id, features_layout), where)
    return image_id


def read_image_ids(path: str, features_layout: str = SPLIT_LAYOUT) -> list[str]:
    """The `id` column of a GLDv2 `test.csv` or `index.csv`, each id checked.

    Raises:
        FileNotFoundError: no such file.
        ValueError: naming the file and line: no `id` column, a hostile or repeated id.
    """
    fs, fs_path = storage.resolve(path)
    reader = None
    try:
        with fs.open(fs_path, "r", encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            ids = _checked_ids(reader, path, features_layout)
    except UnicodeDecodeError as error:  # decoded ahead of the rows: no line to name
        raise ValueError(f"{path}: not UTF-8 text ({error.reason})") from None
    except csv.Error as error:
        line = f", line {reader.line_num}" if reader is not None else ""
        raise ValueError(f"{path}{line}: not a CSV file ({error})") from None
    if not ids:
        raise ValueError(f"{path}: no image ids")
    return ids


def _checked_ids(reader, path: str, features_layout: str) -> list[str]:
    """The checked ids of the `id` column of a CSV reader's rows."""
    header = [name.strip() for name in next(reader, [])]
    if "id" not in header:
        raise ValueError(f"{path}, line 1: header {','.join(header)!r} has no id column")
    column = header.index("id")
    ids: list[str] = []
    seen: set[str] = set()
    for row in reader:
        if not row or not any(field.strip() for field in row):
            continue
        where = f"{path}, line {reader.line_num}"
        if len(row) != len(header):
            raise ValueError(f"{where}: {len(row)} fields, expected {len(header)}")
        image_id = check_image_id(row[column].strip(), features_layout, where)
        if image_id in seen:
            raise ValueError(f"{where}: image id {image_id} is repeated")
        seen.add(image_id)
        ids.append(image_id)
    return ids


def search_progress() -> Callable[[int, int], None]:
    """An `on_block` callback that logs the search's progress (rate, ETA) now and then."""
    tracker = ProgressTracker(None, "similarities")

    def report(done: int, total: int) -> None:
        tracker.set_total(total)
        if tracker.update(done):
            log_progress("search", tracker.snapshot().describe())

    return report


def _write_csv(path: str, test_ids: Sequence[str], index_ids: Sequence[str], ids: np.ndarray):
    fs, fs_path = storage.resolve(path)
    with storage.atomic_open(fs, fs_path) as handle:
        handle.write((",".join(SUBMISSION_COLUMNS) + "\n").encode())
        # A row at a time: GLDv2's submission is about 200 MB of text.
        for test_id, row in zip(test_ids, ids, strict=True):
            handle.write(f"{test_id},{' '.join(index_ids[i] for i in row)}\n".encode())


def write_submission(
    test_ids: Sequence[str],
    index_ids: Sequence[str],
    config: RetrievalSubmissionConfig,
    on_block: Callable[[int, int], None] | None = None,
) -> SubmissionResult:
    """Ranks the index for every test image and writes the submission CSV.

    Args:
        test_ids, index_ids: Checked image ids (see `read_image_ids`).
        config: Features folders and layout, output, k, memory and cache.
        on_block: Called with (similarities done, similarities) during the search;
            None logs the progress.

    Raises:
        FileNotFoundError: naming the first missing descriptor file.
        ValueError: naming a damaged descriptor file, or descriptors of two sizes.
    """
    timings = {}
    started = time.monotonic()
    matrices = [
        descriptor_matrix(
            features_dir,
            [feature_name(i, config.features_layout) for i in ids],
            config.cache_dir or None,
            config.num_threads,
            role=role,
        )
        for role, features_dir, ids in (
            ("test", config.test_features_dir, test_ids),
            ("index", config.index_features_dir, index_ids),
        )
    ]
    queries, index = matrices
    if queries.shape[1] != index.shape[1]:
        raise ValueError(
            f"{config.test_features_dir}: descriptors of {queries.shape[1]} values, but "
            f"{config.index_features_dir} has {index.shape[1]} (features of another model?)"
        )
    timings["read_descriptors_s"] = time.monotonic() - started
    started = time.monotonic()
    top = top_k_by_similarity(
        queries, index, config.k, config.search_memory_bytes, on_block or search_progress()
    )
    timings["search_s"] = time.monotonic() - started
    started = time.monotonic()
    _write_csv(config.output_path, test_ids, index_ids, top.ids)
    timings["write_csv_s"] = time.monotonic() - started
    log.info(
        "wrote %s: top %d of %d index images for %d test images",
        config.output_path,
        top.ids.shape[1],
        len(index_ids),
        len(test_ids),
    )
    return SubmissionResult(config.output_path, list(test_ids), list(index_ids), top, timings)


def make_retrieval_submission(
    config: RetrievalSubmissionConfig, on_block: Callable[[int, int], None] | None = None
) -> SubmissionResult:
    """`write_submission` of the ids of `config.test_csv_path` and `config.index_csv_path`.

    Raises:
        FileNotFoundError, ValueError: See `read_image_ids` and `write_submission`.
    """
    test_ids = read_image_ids(config.test_csv_path, config.features_layout)
    index_ids = read_image_ids(config.index_csv_path, config.features_layout)
    return write_submission(test_ids, index_ids, config, on_block)


def computed_from(
    config: RetrievalSubmissionConfig, test_ids: Sequence[str], index_ids: Sequence[str]
) -> dict:
    """What the CSV depends on: its flags, the ids, and every descriptor file's size and time.

    Raises:
        FileNotFoundError: naming the first missing descriptor file.
    """

    def names(ids: Sequence[str]) -> list[str]:
        return [feature_name(i, config.features_layout) for i in ids]

    return {
        "flags": {name: getattr(config, name) for name in _OUTPUT_FLAGS},
        "test_ids": manifests.fingerprint(list(test_ids)),
        "index_ids": manifests.fingerprint(list(index_ids)),
        "test_descriptors": inputs_fingerprint(config.test_features_dir, names(test_ids)),
        "index_descriptors": inputs_fingerprint(config.index_features_dir, names(index_ids)),
    }


def make_retrieval_submission_if_stale(
    config: RetrievalSubmissionConfig, on_block: Callable[[int, int], None] | None = None
) -> SubmissionResult | None:
    """`make_retrieval_submission` unless the CSV was made from these very inputs.

    Returns:
        What was written; None when `<output_path>` and its manifest
        (`<output_path>.manifest.json`) are current and nothing was done.

    Raises:
        FileNotFoundError, ValueError: See `make_retrieval_submission`.
    """
    test_ids = read_image_ids(config.test_csv_path, config.features_layout)
    index_ids = read_image_ids(config.index_csv_path, config.features_layout)
    inputs = computed_from(config, test_ids, index_ids)
    manifest_path = config.output_path + MANIFEST_SUFFIX
    manifest = manifests.read_json(manifest_path)
    if (
        isinstance(manifest, dict)
        and manifest.get("computed_from") == inputs
        and storage.exists(config.output_path)
    ):
        log.info(
            "%s is current (same ids, descriptors and flags); nothing done", config.output_path
        )
        return None
    fs, path = storage.resolve(manifest_path)
    if fs.exists(path):  # it must not vouch for a CSV of other inputs
        fs.rm(path)
    result = write_submission(test_ids, index_ids, config, on_block)
    manifests.write_json(
        manifest_path,
        {
            "step": "make_retrieval_submission",
            "computed_from": inputs,
            "rows": len(test_ids),
            "index": len(index_ids),
            "timings": result.timings,
        },
    )
    return result


def _subset_scores(predicted: dict, truth: dict, max_predictions: int) -> dict:
    precisions = gm.mean_precisions(predicted, truth, max_predictions)
    mean, median = gm.mean_median_position(predicted, truth, max_predictions)
    return {
        "queries": len(truth),
        "mean_average_precision": gm.mean_average_precision(predicted, truth, max_predictions),
        "mean_precisions": {
            f"P@{k}": float(precisions[k - 1]) for k in PRINTED_RANKS if k <= max_predictions
        },
        "mean_position": mean,
        "median_position": median,
    }


def score_submission(
    predictions_path: str, solution_path: str, max_predictions: int = gm.MAX_PREDICTIONS
) -> dict[str, dict]:
    """The scores `delf compute_retrieval_metrics` prints, per Usage (Public, Private).

    Returns:
        {"public": ..., "private": ...}, each: queries, mean_average_precision
        (mAP@max_predictions), mean_precisions ("P@1", ... at PRINTED_RANKS), mean_position,
        median_position; NaN where the subset is empty.

    Raises:
        FileNotFoundError, ValueError: See `gldv2_metrics.read_solution` and
            `read_predictions`.
    """
    solution = gm.read_solution(solution_path, gm.RETRIEVAL)
    predictions = gm.read_predictions(predictions_path, solution, gm.RETRIEVAL)
    return {
        "public": _subset_scores(predictions.public, solution.public, max_predictions),
        "private": _subset_scores(predictions.private, solution.private, max_predictions),
    }
