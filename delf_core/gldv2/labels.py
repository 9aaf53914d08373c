"""GLDv2 train labels: train.csv, the clean subset of train_clean.csv, and relabeling."""

from __future__ import annotations

import csv
import re
import warnings

import fsspec
import numpy as np
import pandas as pd

from delf_core.gldv2.layout import (
    TRAIN_CLEAN_CSV_COLUMNS,
    TRAIN_CSV_COLUMNS,
    allow_long_csv_fields,
)

RELABELING_COLUMNS = ("new_label", "old_label")
# Labels are written as TFRecord int64 and index the classifier: whole numbers >= 0.
MAX_LANDMARK_ID = np.iinfo(np.int64).max
_DIGITS = re.compile(r"[0-9]+")
_BAD_LABEL = "is not a landmark id (a whole number from 0 to 2**63-1)"


def read_clean_labels(path: str) -> dict[str, int]:
    """{image id: landmark id} of train_clean.csv (`landmark_id,images`), in file order.

    As in the original, an id listed twice keeps its first position and its last label.

    Raises:
      ValueError: one line naming the file, and the row and column when one is wrong.
    """
    labels: dict[str, int] = {}
    allow_long_csv_fields()
    # Undecodable bytes become U+FFFD, so the row that holds them can be named.
    with fsspec.open(path, "rt", newline="", encoding="utf-8", errors="replace") as handle:
        reader = csv.DictReader(handle)
        try:
            _require_columns(reader.fieldnames, TRAIN_CLEAN_CSV_COLUMNS, path)
            for row_number, row in enumerate(reader, start=2):
                label = _label(row["landmark_id"], path, row_number)
                images = row["images"] or ""
                if "\ufffd" in images:
                    raise ValueError(f"{path}: row {row_number}, column images: not UTF-8 text")
                for image_id in images.split():
                    labels[image_id] = label
        except csv.Error as error:
            raise ValueError(
                f"{path}: line {reader.line_num}: not readable as CSV: {error}"
            ) from None
    return labels


def read_train_labels(path: str) -> dict[str, int]:
    """{image id: landmark id} of train.csv (`id,url,landmark_id`).

    Parsed by pandas and checked column-wise, so 4.1M rows take seconds; the first
    wrong row is the one reported.

    Raises:
      ValueError: one line naming the file, and the row and column when one is wrong.
    """
    wanted = ("id", "landmark_id")
    with fsspec.open(path, "rb") as handle, warnings.catch_warnings():
        # A column of mixed types is checked below, row by row: pandas' warning is noise.
        warnings.simplefilter("ignore", pd.errors.DtypeWarning)
        try:
            # No NA parsing: an empty cell stays "" and is reported as such.
            frame = pd.read_csv(
                handle, usecols=lambda c: c in wanted, dtype={"id": str}, na_filter=False
            )
        except pd.errors.EmptyDataError:
            header = ",".join(TRAIN_CSV_COLUMNS)
            raise ValueError(f"{path}: empty file; expected the header {header}") from None
        except (pd.errors.ParserError, UnicodeDecodeError) as error:
            first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
            raise ValueError(f"{path}: not a readable CSV: {first_line}") from None
    _require_columns(list(frame.columns), wanted, path, TRAIN_CSV_COLUMNS)  # url is not read
    empty_id = (frame["id"].str.len() == 0).to_numpy()
    if empty_id.any():
        raise ValueError(f"{path}: row {int(empty_id.argmax()) + 2}, column id: empty")
    values = _landmark_ids(frame["landmark_id"], path)
    return dict(zip(frame["id"].tolist(), values.tolist(), strict=True))


def relabeling(labels: dict[str, int]) -> dict[int, int]:
    """{old landmark id: new label}, contiguous 0..K-1 in ascending old-id order."""
    return {old: new for new, old in enumerate(sorted(set(labels.values())))}


def relabeling_csv(mapping: dict[int, int]) -> str:
    """The original's relabeling.csv: header `new_label,old_label`, one row per class."""
    lines = [",".join(RELABELING_COLUMNS)]
    lines += [f"{new},{old}" for old, new in sorted(mapping.items(), key=lambda item: item[1])]
    return "\n".join(lines) + "\n"


def _landmark_ids(column: pd.Series, path: str) -> np.ndarray:
    """The column as int64, or ValueError naming its first value that is not a landmark id."""
    values = column.to_numpy()
    if values.dtype.kind == "i":  # the usual case: pandas parsed whole numbers
        bad = values < 0
    elif values.dtype.kind == "u":
        bad = values > MAX_LANDMARK_ID
    elif values.dtype.kind == "f":  # 12.5, or whole numbers beside one
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values != np.floor(values)) | (values < 0)
            bad |= values > float(MAX_LANDMARK_ID)
    else:  # text: empty cells, words, or numbers too long for any integer type
        text = column.astype(str).str.strip()
        length = text.str.len()
        bad = ~text.str.fullmatch(_DIGITS.pattern).to_numpy(dtype=bool)
        bad |= (length > 19).to_numpy() | (
            (length == 19) & (text > str(MAX_LANDMARK_ID))
        ).to_numpy()
        if not bad.any():
            return text.astype(np.int64).to_numpy()
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(
            f"{path}: row {row + 2}, column landmark_id: {str(values[row])!r} {_BAD_LABEL}"
        )
    return values.astype(np.int64)


def _label(text: str | None, path: str, row_number: int) -> int:
    value = (text or "").strip()
    if not _DIGITS.fullmatch(value) or int(value) > MAX_LANDMARK_ID:
        raise ValueError(f"{path}: row {row_number}, column landmark_id: {text!r} {_BAD_LABEL}")
    return int(value)


def _require_columns(found, needed: tuple[str, ...], path: str, header=None) -> None:
    """ValueError naming the file unless `found` has every column of `needed`."""
    header = header or needed
    if not found:
        raise ValueError(f"{path}: empty file; expected the header {','.join(header)}")
    missing = [c for c in needed if c not in found]
    if missing:
        raise ValueError(
            f"{path}: row 1: no column {', '.join(missing)} in the header (expected "
            f"{','.join(header)})"
        )
