"""GLDv2 train labels: train.csv, the clean subset of train_clean.csv, and relabeling."""

from __future__ import annotations

import csv
import io

import fsspec
import pandas as pd

RELABELING_COLUMNS = ("new_label", "old_label")


def read_clean_labels(path: str) -> dict[str, int]:
    """{image id: landmark id} of train_clean.csv (`landmark_id,images`), in file order.

    As in the original, an id listed twice keeps its first position and its last label.

    Raises:
      ValueError: naming the file and row when a landmark id is not an integer.
    """
    labels: dict[str, int] = {}
    with fsspec.open(path, "rt", newline="") as handle:
        reader = csv.DictReader(handle)
        _require_columns(reader.fieldnames, ("landmark_id", "images"), path)
        for row_number, row in enumerate(reader, start=2):
            label = _label(row["landmark_id"], path, row_number)
            for image_id in (row["images"] or "").split():
                labels[image_id] = label
    return labels


def read_train_labels(path: str) -> dict[str, int]:
    """{image id: landmark id} of train.csv (`id,url,landmark_id`)."""
    with fsspec.open(path, "rb") as handle:
        frame = pd.read_csv(
            io.BytesIO(handle.read()), usecols=["id", "landmark_id"], dtype={"id": str}
        )
    if frame["landmark_id"].isna().any() or frame["landmark_id"].dtype.kind not in "iu":
        bad = frame.index[pd.to_numeric(frame["landmark_id"], errors="coerce").isna()][0]
        raise ValueError(f"{path}: row {bad + 2}: landmark_id is not an integer")
    return dict(zip(frame["id"], frame["landmark_id"].astype(int).tolist(), strict=True))


def relabeling(labels: dict[str, int]) -> dict[int, int]:
    """{old landmark id: new label}, contiguous 0..K-1 in ascending old-id order."""
    return {old: new for new, old in enumerate(sorted(set(labels.values())))}


def relabeling_csv(mapping: dict[int, int]) -> str:
    """The original's relabeling.csv: header `new_label,old_label`, one row per class."""
    lines = [",".join(RELABELING_COLUMNS)]
    lines += [f"{new},{old}" for old, new in sorted(mapping.items(), key=lambda item: item[1])]
    return "\n".join(lines) + "\n"


def _label(text: str, path: str, row_number: int) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        raise ValueError(
            f"{path}: row {row_number}: landmark_id {text!r} is not an integer"
        ) from None


def _require_columns(found, needed: tuple[str, ...], path: str) -> None:
    missing = [c for c in needed if c not in (found or [])]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}; found {found}")
