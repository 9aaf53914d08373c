"""GLDv2 (Kaggle) recognition and retrieval metrics, and the solution/submission CSV readers."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from delf_core import storage

RECOGNITION, RETRIEVAL = "recognition", "retrieval"
TASKS = (RECOGNITION, RETRIEVAL)
PUBLIC, PRIVATE, IGNORED = "Public", "Private", "Ignored"
# The ground-truth column of each task's CSVs (solution `id,<column>,Usage`, submission
# `id,<column>`).
ANSWER_COLUMN = {RECOGNITION: "landmarks", RETRIEVAL: "images"}
# The Kaggle retrieval challenge scores the first 100 images of each query.
MAX_PREDICTIONS = 100
# The released solutions write "None" where a row has no ground truth.
_NO_ANSWER = ("", "None")


class RecognitionPrediction(NamedTuple):
    """One recognition submission row: the predicted landmark and its confidence."""

    landmark_id: int
    score: float


class Solution(NamedTuple):
    """A solution CSV split by Usage.

    Attributes:
        public: Test id to ground truth, for the Public rows: landmark ids (int) for
            recognition, index image ids (str) for retrieval; [] where there is none.
        private: The same for the Private rows.
        ignored: Test ids of the Ignored rows, in file order; they are never scored.
    """

    public: dict[str, list[Any]]
    private: dict[str, list[Any]]
    ignored: list[str]


class Predictions(NamedTuple):
    """A submission CSV split like its solution; rows with no prediction are absent.

    Values are `RecognitionPrediction`s for recognition and lists of index image ids
    (best first) for retrieval.
    """

    public: dict[str, Any]
    private: dict[str, Any]


# --- Recognition -------------------------------------------------------------------


def _num_with_ground_truth(solution: Mapping[str, Sequence[Any]]) -> int:
    return sum(1 for truth in solution.values() if truth)


def global_average_precision(
    predictions: Mapping[str, RecognitionPrediction],
    solution: Mapping[str, Sequence[int]],
    ignore_non_gt_test_images: bool = False,
) -> float:
    """Global Average Precision (micro-AP over all predictions, Kaggle's recognition metric).

    Predictions are ranked by score (descending), ties by test id then landmark id; the
    precision at each correct prediction is summed and divided by the number of test
    images with ground truth.

    Args:
        predictions: Test id to its prediction.
        solution: Test id to its ground-truth landmark ids ([] for non-landmark images).
        ignore_non_gt_test_images: Skip predictions for test images without ground truth
            instead of counting them as wrong (False for the Kaggle challenge).

    Returns:
        GAP in [0, 1]; NaN when no test image has ground truth (the original divides by 0).

    Raises:
        ValueError: A prediction is for a test id the solution lacks.
    """
    _check_known(predictions, solution)
    # Two stable sorts: Kaggle's tie-break (id, class) under the score order.
    ordered = sorted(predictions.items(), key=lambda item: (item[0], item[1].landmark_id))
    ordered.sort(key=lambda item: item[1].score, reverse=True)
    total = correct = 0
    gap = 0.0
    for test_id, prediction in ordered:
        truth = solution[test_id]
        if ignore_non_gt_test_images and not truth:
            continue
        total += 1
        if prediction.landmark_id in truth:
            correct += 1
            gap += correct / total
    num_positives = _num_with_ground_truth(solution)
    return gap / num_positives if num_positives else float("nan")


def top1_accuracy(
    predictions: Mapping[str, RecognitionPrediction], solution: Mapping[str, Sequence[int]]
) -> float:
    """The fraction of test images with ground truth whose prediction is right.

    Returns:
        Accuracy in [0, 1]; NaN when no test image has ground truth.
    """
    _check_known(predictions, solution)
    correct = sum(
        1
        for test_id, truth in solution.items()
        if truth and test_id in predictions and predictions[test_id].landmark_id in truth
    )
    num_positives = _num_with_ground_truth(solution)
    return correct / num_positives if num_positives else float("nan")


# --- Retrieval ---------------------------------------------------------------------


def _hits(prediction: Sequence[str], truth: Sequence[str], max_predictions: int) -> np.ndarray:
    """[max_predictions] bool: position i holds a new correct image (duplicates are not)."""
    relevant = set(truth)
    seen: set[str] = set()
    hits = np.zeros(max_predictions, bool)
    for i, image_id in enumerate(prediction[:max_predictions]):
        if image_id not in seen:
            hits[i] = image_id in relevant
            seen.add(image_id)
    return hits


def _check_known(predictions: Mapping[str, Any], solution: Mapping[str, Any]) -> None:
    unknown = next((key for key in predictions if key not in solution), None)
    if unknown is not None:
        raise ValueError(f"Test image {unknown} is not part of the solution")


def mean_average_precision(
    predictions: Mapping[str, Sequence[str]],
    solution: Mapping[str, Sequence[str]],
    max_predictions: int = MAX_PREDICTIONS,
) -> float:
    """mAP@max_predictions, Kaggle's retrieval metric.

    Per query, AP = sum of precision@i at each correct position i (repeated images are
    skipped but keep their position) / min(#ground truth, max_predictions). The mean is
    over every query of the solution: a query with no prediction, or no ground truth,
    scores 0.

    Returns:
        mAP in [0, 1]; NaN for an empty solution.

    Raises:
        ValueError: A prediction is for a test id the solution lacks.
    """
    _check_known(predictions, solution)
    if not solution:
        return float("nan")
    positions = np.arange(1, max_predictions + 1)
    total = 0.0
    for test_id, prediction in predictions.items():
        truth = solution[test_id]
        if not truth:
            continue
        hits = _hits(prediction, truth, max_predictions)
        precision_at_hits = np.cumsum(hits)[hits] / positions[hits]
        total += float(precision_at_hits.sum()) / min(len(truth), max_predictions)
    return total / len(solution)


def mean_precisions(
    predictions: Mapping[str, Sequence[str]],
    solution: Mapping[str, Sequence[str]],
    max_predictions: int = MAX_PREDICTIONS,
) -> np.ndarray:
    """Mean precision@k for k = 1..max_predictions, over every query of the solution.

    Returns:
        [max_predictions] array (NaN for an empty solution); queries with no prediction
        count 0 at every k.
    """
    _check_known(predictions, solution)
    if not solution:
        return np.full(max_predictions, np.nan)
    positions = np.arange(1, max_predictions + 1)
    total = np.zeros(max_predictions)
    for test_id, prediction in predictions.items():
        total += np.cumsum(_hits(prediction, solution[test_id], max_predictions)) / positions
    return total / len(solution)


def mean_median_position(
    predictions: Mapping[str, Sequence[str]],
    solution: Mapping[str, Sequence[str]],
    max_predictions: int = MAX_PREDICTIONS,
) -> tuple[float, float]:
    """Mean and median 1-based position of each query's first correct image.

    A query with no correct image in its first `max_predictions` (or no prediction) is
    at max_predictions + 1.

    Returns:
        (mean, median); NaN for an empty solution.
    """
    _check_known(predictions, solution)
    if not solution:
        return float("nan"), float("nan")
    positions = np.full(len(solution), max_predictions + 1, dtype=np.float64)
    for row, test_id in enumerate(solution):
        hits = _hits(predictions.get(test_id, ()), solution[test_id], max_predictions)
        if hits.any():
            positions[row] = int(np.argmax(hits)) + 1
    return float(np.mean(positions)), float(np.median(positions))


# --- CSV files ---------------------------------------------------------------------


def _rows(path: str, columns: Sequence[str]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank data row, after checking the header."""
    if not path:
        raise ValueError("no file given")
    fs, fs_path = storage.resolve(path)
    with fs.open(fs_path, "rb") as handle:
        data = handle.read()
    try:
        text = data.decode("utf-8-sig")  # a BOM is what spreadsheets add
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a UTF-8 CSV file ({error})") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if header is None:
        raise ValueError(f"{path}: empty file; expected a header {','.join(columns)}")
    if [name.strip() for name in header] != list(columns):
        raise ValueError(
            f"{path}, line 1: header is {','.join(header)!r}, expected {','.join(columns)!r}"
        )
    for row in reader:
        if not row or not any(field.strip() for field in row):
            continue
        if len(row) != len(columns):
            raise ValueError(
                f"{path}, line {reader.line_num}: {len(row)} fields, expected {len(columns)} "
                f"({','.join(columns)})"
            )
        yield reader.line_num, [field.strip() for field in row]


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def read_solution(path: str, task: str) -> Solution:
    """Reads a solution CSV: `recognition_solution_v2.1.csv` or `retrieval_solution_v2.1.csv`.

    Columns `id,landmarks,Usage` (recognition: space-separated landmark ids) or
    `id,images,Usage` (retrieval: space-separated index image ids). Usage is Public,
    Private or Ignored; the answer of an Ignored row is not read. An empty answer or
    `None` means no ground truth.

    Args:
        path: Local path or URL.
        task: "recognition" or "retrieval".

    Raises:
        FileNotFoundError: No such file.
        ValueError: Bad header, wrong field count, unknown Usage, a repeated test id or a
            landmark id that is not an integer; the message names the file and line.
    """
    _check_task(task)
    solution = Solution({}, {}, [])
    by_usage = {PUBLIC: solution.public, PRIVATE: solution.private}
    seen: set[str] = set()
    for line, (test_id, answer, usage) in _rows(path, ("id", ANSWER_COLUMN[task], "Usage")):
        where = f"{path}, line {line}"
        if test_id in seen:
            raise ValueError(f"{where}: test image {test_id} is repeated")
        seen.add(test_id)
        if usage == IGNORED:
            solution.ignored.append(test_id)
            continue
        if usage not in by_usage:
            raise ValueError(
                f"{where}: test image {test_id} has Usage {usage!r}; expected Public, "
                "Private or Ignored"
            )
        ids = [] if answer in _NO_ANSWER else answer.split()
        if task == RECOGNITION:
            try:
                ids = [int(v) for v in ids]
            except ValueError:
                raise ValueError(f"{where}: landmarks {answer!r} are not integers") from None
        by_usage[usage][test_id] = ids
    return solution


def read_predictions(path: str, solution: Solution, task: str) -> Predictions:
    """Reads a submission CSV and splits it by the solution's Usage.

    Columns `id,landmarks` (recognition: "<landmark id> <score>") or `id,images`
    (retrieval: space-separated index image ids, best first). Rows of Ignored test ids
    and rows with an empty prediction are skipped; test ids the submission lacks simply
    have no prediction (they score 0).

    Args:
        path: Local path or URL.
        solution: The solution the submission answers.
        task: "recognition" or "retrieval".

    Raises:
        FileNotFoundError: No such file.
        ValueError: Bad header, wrong field count, a repeated or unknown test id, or a
            recognition prediction that is not "<int> <float>"; names the file and line.
    """
    _check_task(task)
    predictions = Predictions({}, {})
    ignored = set(solution.ignored)
    seen: set[str] = set()
    for line, (test_id, answer) in _rows(path, ("id", ANSWER_COLUMN[task])):
        where = f"{path}, line {line}"
        if test_id in seen:
            raise ValueError(f"{where}: test image {test_id} is repeated")
        seen.add(test_id)
        if test_id in ignored or not answer:
            continue
        values = answer.split()
        prediction: Any = values
        if task == RECOGNITION:
            try:
                if len(values) != 2:
                    raise ValueError
                prediction = RecognitionPrediction(int(values[0]), float(values[1]))
            except ValueError:
                raise ValueError(
                    f"{where}: landmarks must be '<landmark id> <score>', got {answer!r}"
                ) from None
        if test_id in solution.public:
            predictions.public[test_id] = prediction
        elif test_id in solution.private:
            predictions.private[test_id] = prediction
        else:
            raise ValueError(f"{where}: test image {test_id} is not in the solution")
    return predictions
