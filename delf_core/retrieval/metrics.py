"""Revisited Oxford/Paris protocols, mAP and precision/recall@k, and the `metrics.txt` file."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from delf_core import storage

# The ranks perform_retrieval reports precision and recall at.
PR_RANKS = (1, 5, 10)

# NumPy's default print options, pinned: metrics.txt holds NumPy's array printing, and a
# caller's np.set_printoptions must not change the bytes of the file.
_PRINT_OPTIONS: dict[str, Any] = dict(
    precision=8,
    threshold=1000,
    edgeitems=3,
    linewidth=75,
    suppress=False,
    nanstr="nan",
    infstr="inf",
    sign="-",
    floatmode="maxprec",
    legacy=False,
)
_MAP_LINE = re.compile(r"^\s*mAP=(\S+)$")
_PR_LINE = re.compile(r"^\s*m([PR])@k\[([^\]]*)\]\s*\[([^\]]*)\]$")


class Metrics(NamedTuple):
    """What `compute_metrics` returns; unpacks like the original's 6-tuple.

    Attributes:
        mean_average_precision: mAP over the queries with a non-empty `ok` list.
        mean_precisions: [K] mean precision at each desired rank, over the same queries.
        mean_recalls: [K] mean recall at each desired rank.
        average_precisions: [Q] per-query AP, NaN for queries with an empty `ok` list.
        precisions: [Q, K] per-query precisions (NaN rows likewise).
        recalls: [Q, K] per-query recalls (NaN rows likewise).
    """

    mean_average_precision: float
    mean_precisions: np.ndarray
    mean_recalls: np.ndarray
    average_precisions: np.ndarray
    precisions: np.ndarray
    recalls: np.ndarray


class SavedMetrics(NamedTuple):
    """The contents of a `metrics.txt`, as fractions (the file holds percentages)."""

    mean_average_precision: dict[str, float]
    pr_ranks: list[int]
    mean_precisions: dict[str, np.ndarray]
    mean_recalls: dict[str, np.ndarray]


def _ids(values: Any) -> np.ndarray:
    # An empty list would become float64; index ids are always int64.
    return np.asarray(values, dtype=np.int64).ravel()


def _protocol(ok: list[Any], junk: list[Any]) -> dict[str, np.ndarray]:
    return {
        "ok": np.concatenate([_ids(v) for v in ok]),
        "junk": np.concatenate([_ids(v) for v in junk]),
    }


def parse_easy_medium_hard(
    ground_truth: Sequence[Mapping[str, Any]],
) -> tuple[list[dict[str, np.ndarray]], list[dict[str, np.ndarray]], list[dict[str, np.ndarray]]]:
    """Splits Revisited ground truth into the Easy, Medium and Hard protocols.

    Easy: ok = easy, junk = junk + hard. Medium: ok = easy + hard, junk = junk.
    Hard: ok = hard, junk = junk + easy. Concatenated in that order, as the original.

    Args:
        ground_truth: Per query, a mapping with `easy`, `hard` and `junk` index lists
            (e.g. `RevisitedDataset.ground_truth`).

    Returns:
        (easy, medium, hard): per protocol, per query, {"ok", "junk"} int64 arrays.
    """
    easy, medium, hard = [], [], []
    for truth in ground_truth:
        e, h, j = truth["easy"], truth["hard"], truth["junk"]
        easy.append(_protocol([e], [j, h]))
        medium.append(_protocol([e, h], [j]))
        hard.append(_protocol([h], [j, e]))
    return easy, medium, hard


def adjust_positive_ranks(positive_ranks: Any, junk_ranks: Any) -> np.ndarray:
    """Positive ranks as if the junk images were removed from the ranked list.

    Args:
        positive_ranks: 0-based positions of the positive images in a ranked list.
        junk_ranks: 0-based positions of the junk images in the same list.

    Returns:
        Each positive rank minus the number of junk ranks strictly smaller than it.
    """
    positive = _ids(positive_ranks)
    junk = np.sort(_ids(junk_ranks))
    return positive - np.searchsorted(junk, positive, side="left")


def average_precision(positive_ranks: Any) -> float:
    """Average precision by the Revisited (trapezoidal) convention.

    For the i-th positive (0-based) at rank r: left precision = 1 if r == 0 else i / r,
    right precision = (i + 1) / (r + 1); AP is the mean of (left + right) / 2.

    Args:
        positive_ranks: Sorted 0-based ranks of the positives (junk already removed).

    Returns:
        The AP; 0.0 when there are no positives.
    """
    ranks = _ids(positive_ranks).astype(np.float64)
    if not ranks.size:
        return 0.0
    i = np.arange(ranks.size, dtype=np.float64)
    left = np.divide(i, ranks, out=np.ones_like(ranks), where=ranks != 0)
    right = (i + 1.0) / (ranks + 1.0)
    return float(np.sum(left + right) / (2.0 * ranks.size))


def precision_recall_at_ranks(
    positive_ranks: Any, desired_pr_ranks: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at each of `desired_pr_ranks` (1-based).

    Where a desired rank k lies past the last positive, precision is taken at the last
    positive's rank instead (the Revisited convention).

    Args:
        positive_ranks: Sorted 0-based ranks of the positives (junk already removed).
        desired_pr_ranks: The ranks k, 1-based.

    Returns:
        (precisions, recalls), each [len(desired_pr_ranks)]; zeros with no positives.
    """
    ranks = _ids(positive_ranks) + 1
    k = _ids(desired_pr_ranks)
    if not ranks.size:
        return np.zeros(k.size), np.zeros(k.size)
    ranks = np.sort(ranks)
    recalls = np.searchsorted(ranks, k, side="right") / ranks.size
    k_precision = np.minimum(k, ranks[-1])
    precisions = np.searchsorted(ranks, k_precision, side="right") / k_precision
    return precisions.astype(np.float64), recalls.astype(np.float64)


def compute_metrics(
    sorted_index_ids: np.ndarray,
    ground_truth: Sequence[Mapping[str, Any]],
    desired_pr_ranks: Sequence[int],
) -> Metrics:
    """mAP and mean precision/recall@k of ranked lists under one protocol.

    Args:
        sorted_index_ids: [Q, N] per query, index image ids from best to worst.
        ground_truth: Per query, {"ok", "junk"} id arrays (one protocol of
            `parse_easy_medium_hard`).
        desired_pr_ranks: The ranks k (1-based) for precision and recall.

    Returns:
        The metrics. Queries with an empty `ok` list get NaN and are left out of the means.

    Raises:
        ValueError: A desired rank exceeds N, or Q differs from len(ground_truth).
    """
    ranked = np.asarray(sorted_index_ids)
    if ranked.ndim != 2 or ranked.shape[0] != len(ground_truth):
        raise ValueError(
            f"sorted_index_ids must be [num_queries={len(ground_truth)}, num_index_images], "
            f"got shape {ranked.shape}"
        )
    num_queries, num_index = ranked.shape
    k = _ids(desired_pr_ranks)
    if k.size and k.max() > num_index:
        raise ValueError(
            f"Requested PR ranks up to {k.max()}, larger than the number of index images "
            f"({num_index})"
        )
    average_precisions = np.full(num_queries, np.nan)
    precisions = np.full((num_queries, k.size), np.nan)
    recalls = np.full((num_queries, k.size), np.nan)
    for q, truth in enumerate(ground_truth):
        ok, junk = _ids(truth["ok"]), _ids(truth["junk"])
        if not ok.size:
            continue
        # Membership by lookup table: O(N) per query, no sort of the ranked list.
        size = max(int(ranked[q].max(initial=-1)), int(ok.max()), int(junk.max(initial=-1))) + 1
        is_ok = np.zeros(size, bool)
        is_ok[ok] = True
        is_junk = np.zeros(size, bool)
        is_junk[junk] = True
        positive_ranks = np.flatnonzero(is_ok[ranked[q]])
        adjusted = adjust_positive_ranks(positive_ranks, np.flatnonzero(is_junk[ranked[q]]))
        average_precisions[q] = average_precision(adjusted)
        precisions[q], recalls[q] = precision_recall_at_ranks(adjusted, k)
    return _means(average_precisions, precisions, recalls)


def compute_metrics_from_positions(
    positive_positions: Sequence[np.ndarray | None],
    junk_positions: Sequence[np.ndarray],
    num_ranked: int,
    desired_pr_ranks: Sequence[int],
) -> Metrics:
    """`compute_metrics` from where the positives and junk images stand in each ranking.

    The metrics need no more of a ranked list than those positions, so a search can
    count them in bounded memory instead of sorting the whole index per query.

    Args:
        positive_positions: Per query, the 0-based positions of its `ok` images in its
            full ranked list (each image once); None for a query with an empty `ok`
            list, which gets NaN and is left out of the means, as in `compute_metrics`.
        junk_positions: Per query, the 0-based positions of its junk images.
        num_ranked: The length of every ranked list (the index size).
        desired_pr_ranks: The ranks k (1-based) for precision and recall.

    Returns:
        The metrics, equal to `compute_metrics` on the full ranked lists.

    Raises:
        ValueError: A desired rank exceeds `num_ranked`, or the two lists differ in length.
    """
    if len(positive_positions) != len(junk_positions):
        raise ValueError(
            f"{len(positive_positions)} queries of positive positions but "
            f"{len(junk_positions)} of junk positions"
        )
    k = _ids(desired_pr_ranks)
    if k.size and k.max() > num_ranked:
        raise ValueError(
            f"Requested PR ranks up to {k.max()}, larger than the number of index images "
            f"({num_ranked})"
        )
    num_queries = len(positive_positions)
    average_precisions = np.full(num_queries, np.nan)
    precisions = np.full((num_queries, k.size), np.nan)
    recalls = np.full((num_queries, k.size), np.nan)
    for q, positions in enumerate(positive_positions):
        if positions is None:
            continue
        adjusted = adjust_positive_ranks(np.sort(_ids(positions)), junk_positions[q])
        average_precisions[q] = average_precision(adjusted)
        precisions[q], recalls[q] = precision_recall_at_ranks(adjusted, k)
    return _means(average_precisions, precisions, recalls)


def _means(average_precisions: np.ndarray, precisions: np.ndarray, recalls: np.ndarray) -> Metrics:
    valid = ~np.isnan(average_precisions)
    num_valid = int(valid.sum())
    if num_valid:
        mean_ap = float(average_precisions[valid].mean())
        mean_p, mean_r = precisions[valid].mean(axis=0), recalls[valid].mean(axis=0)
    else:
        size = precisions.shape[1]
        mean_ap, mean_p, mean_r = float("nan"), np.full(size, np.nan), np.full(size, np.nan)
    return Metrics(mean_ap, mean_p, mean_r, average_precisions, precisions, recalls)


def format_metrics(
    mean_average_precision: Mapping[str, float],
    mean_precisions: Mapping[str, Any],
    mean_recalls: Mapping[str, Any],
    pr_ranks: Sequence[int],
) -> str:
    """The text of `metrics.txt`, byte for byte as the original writes it."""
    ranks = np.asarray(pr_ranks)
    percent = lambda v: np.around(np.asarray(v, dtype=np.float64) * 100, decimals=2)  # noqa: E731
    out = []
    with np.printoptions(**_PRINT_OPTIONS):
        for name in sorted(mean_average_precision):
            out.append(
                f"{name}\n  mAP={percent(mean_average_precision[name])}\n"
                f"  mP@k{ranks} {percent(mean_precisions[name])}\n"
                f"  mR@k{ranks} {percent(mean_recalls[name])}\n"
            )
    return "".join(out)


def save_metrics_file(
    mean_average_precision: Mapping[str, float],
    mean_precisions: Mapping[str, Any],
    mean_recalls: Mapping[str, Any],
    pr_ranks: Sequence[int],
    path: str,
) -> None:
    """Writes `metrics.txt`: per protocol (sorted by name) mAP, mP@k and mR@k in percent.

    Args:
        mean_average_precision: Protocol name (e.g. "medium", "hard") to mAP in [0, 1].
        mean_precisions: Protocol name to [K] mean precisions in [0, 1].
        mean_recalls: Protocol name to [K] mean recalls in [0, 1].
        pr_ranks: The K ranks.
        path: Local path or URL; written whole or not at all.
    """
    text = format_metrics(mean_average_precision, mean_precisions, mean_recalls, pr_ranks)
    fs, fs_path = storage.resolve(path)
    storage.write_bytes(fs, fs_path, text.encode())


def parse_metrics(text: str, source: str = "metrics") -> SavedMetrics:
    """Parses the text of a `metrics.txt` (see `read_metrics_file`)."""
    lines = [line.rstrip() for line in text.splitlines()]
    if len(lines) % 4:
        raise ValueError(
            f"Malformed input {source}: number of lines must be a multiple of 4, "
            f"but it is {len(lines)}"
        )
    saved = SavedMetrics({}, [], {}, {})
    for start in range(0, len(lines), 4):
        name = lines[start]
        if name in saved.mean_average_precision:
            raise ValueError(
                f"Malformed input {source}: protocol {name} is found a second time "
                f"(line {start + 1})"
            )
        line = start + 1  # 0-based index of the line being parsed, for the message
        try:
            matched = _MAP_LINE.match(lines[line])
            if not matched:
                raise ValueError("expected '  mAP=<value>'")
            saved.mean_average_precision[name] = float(matched.group(1)) / 100.0
            for kind, target in (("P", saved.mean_precisions), ("R", saved.mean_recalls)):
                line += 1
                pr = _PR_LINE.match(lines[line])
                if not pr or pr.group(1) != kind:
                    raise ValueError(f"expected '  m{kind}@k[<ranks>] [<values>]'")
                ranks = [int(v) for v in pr.group(2).split()]
                if not saved.pr_ranks:
                    saved.pr_ranks.extend(ranks)
                elif ranks != saved.pr_ranks:
                    raise ValueError(f"inconsistent PR ranks {ranks}, expected {saved.pr_ranks}")
                target[name] = np.array([float(v) for v in pr.group(3).split()]) / 100.0
        except ValueError as error:
            raise ValueError(f"Malformed input {source}, line {line + 1}: {error}") from None
    return saved


def read_metrics_file(path: str) -> SavedMetrics:
    """Reads a `metrics.txt` written by `save_metrics_file` (or the original).

    Args:
        path: Local path or URL.

    Returns:
        (mean_average_precision, pr_ranks, mean_precisions, mean_recalls), as fractions.

    Raises:
        ValueError: "Malformed input ...": not 4 lines per protocol, a protocol repeated,
            a line not in the format, or PR ranks that differ between protocols.
    """
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        text = handle.read().decode()
    return parse_metrics(text, path)
