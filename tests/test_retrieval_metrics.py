"""Revisited Oxford/Paris metrics: REFERENCE.md §8.4 vectors, metrics.txt, real ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delf_core.retrieval import read_dataset_file
from delf_core.retrieval.metrics import (
    PR_RANKS,
    adjust_positive_ranks,
    average_precision,
    compute_metrics,
    parse_easy_medium_hard,
    precision_recall_at_ranks,
    read_metrics_file,
    save_metrics_file,
)

REVISITOP = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "revisitop"

METRICS_TXT = (
    "hard\n  mAP=70.0\n  mP@k[1 5] [100.  80.]\n  mR@k[1 5] [50. 80.]\n"
    "medium\n  mAP=90.0\n  mP@k[1 5] [100. 100.]\n  mR@k[1 5] [ 50. 100.]\n"
)


def _ids(*values: int) -> np.ndarray:
    return np.array(values, dtype=np.int64)


def _assert_protocol(actual, expected) -> None:
    assert len(actual) == len(expected)
    for got, (ok, junk) in zip(actual, expected, strict=True):
        assert got["ok"].dtype == np.int64 and got["junk"].dtype == np.int64
        np.testing.assert_array_equal(got["ok"], ok)
        np.testing.assert_array_equal(got["junk"], junk)


def test_parse_easy_medium_hard_orders_as_the_original() -> None:
    ground_truth = [
        {"easy": _ids(10, 56, 100), "hard": _ids(0), "junk": _ids(6, 90)},
        {"easy": _ids(), "hard": _ids(5), "junk": _ids(99, 100)},
        {"easy": _ids(33), "hard": _ids(66, 99), "junk": _ids()},
    ]
    easy, medium, hard = parse_easy_medium_hard(ground_truth)
    _assert_protocol(easy, [([10, 56, 100], [6, 90, 0]), ([], [99, 100, 5]), ([33], [66, 99])])
    _assert_protocol(medium, [([10, 56, 100, 0], [6, 90]), ([5], [99, 100]), ([33, 66, 99], [])])
    _assert_protocol(hard, [([0], [6, 90, 10, 56, 100]), ([5], [99, 100]), ([66, 99], [33])])


def test_parse_accepts_plain_lists() -> None:
    (easy,), _, _ = parse_easy_medium_hard([{"easy": [], "hard": [], "junk": [3]}])
    assert easy["ok"].dtype == np.int64 and easy["ok"].size == 0
    np.testing.assert_array_equal(easy["junk"], [3])


def test_adjust_positive_ranks() -> None:
    np.testing.assert_array_equal(
        adjust_positive_ranks(_ids(0, 2, 6, 10, 20), _ids(1, 8, 9, 30)), [0, 1, 5, 7, 17]
    )
    np.testing.assert_array_equal(adjust_positive_ranks(_ids(0, 3), _ids()), [0, 3])


def test_average_precision() -> None:
    assert average_precision(_ids(0, 2, 5)) == pytest.approx(0.677778, abs=1e-6)
    assert average_precision(_ids()) == 0.0
    assert average_precision(_ids(0, 1, 2)) == 1.0


def test_precision_recall_at_ranks() -> None:
    precisions, recalls = precision_recall_at_ranks(_ids(0, 2, 5), [1, 5, 10])
    np.testing.assert_allclose(precisions, [1.0, 0.4, 0.5])
    np.testing.assert_allclose(recalls, [0.333333, 0.666667, 1.0], atol=1e-6)
    precisions, recalls = precision_recall_at_ranks(_ids(), [1, 5])
    np.testing.assert_array_equal(precisions, [0, 0])
    np.testing.assert_array_equal(recalls, [0, 0])


def _vector_inputs():
    sorted_ids = np.array([[4, 2, 0, 1, 3], [0, 2, 4, 1, 3], [0, 1, 2, 3, 4]])
    ground_truth = [
        {"ok": _ids(0, 1), "junk": _ids(2)},
        {"ok": _ids(0, 4), "junk": _ids()},
        {"ok": _ids(), "junk": _ids()},
    ]
    return sorted_ids, ground_truth


def test_compute_metrics() -> None:
    sorted_ids, ground_truth = _vector_inputs()
    mean_ap, mean_p, mean_r, aps, precisions, recalls = compute_metrics(
        sorted_ids, ground_truth, [1, 2, 5]
    )
    assert mean_ap == pytest.approx(0.604167, abs=1e-6)
    np.testing.assert_allclose(mean_p, [0.5, 0.5, 0.666667], atol=1e-6)
    np.testing.assert_allclose(mean_r, [0.25, 0.5, 1.0])
    np.testing.assert_allclose(aps, [0.416667, 0.791667, np.nan], atol=1e-6)
    np.testing.assert_allclose(
        precisions, [[0, 0.5, 0.666667], [1, 0.5, 0.666667], [np.nan] * 3], atol=1e-6
    )
    np.testing.assert_allclose(recalls, [[0, 0.5, 1], [0.5, 0.5, 1], [np.nan] * 3])


def test_compute_metrics_rejects_ranks_past_the_index() -> None:
    sorted_ids, ground_truth = _vector_inputs()
    with pytest.raises(ValueError, match="larger than the number of index images"):
        compute_metrics(sorted_ids, ground_truth, [1, 6])
    with pytest.raises(ValueError, match="num_queries=3"):
        compute_metrics(sorted_ids[:2], ground_truth, [1])


def test_compute_metrics_with_no_valid_query_is_nan() -> None:
    metrics = compute_metrics(np.array([[0, 1]]), [{"ok": _ids(), "junk": _ids()}], [1])
    assert np.isnan(metrics.mean_average_precision) and np.isnan(metrics.mean_precisions).all()


def _save_vector(path: str) -> None:
    save_metrics_file(
        {"hard": 0.7, "medium": 0.9},
        {"hard": np.array([1.0, 0.8]), "medium": np.array([1, 1])},
        {"hard": np.array([0.5, 0.8]), "medium": np.array([0.5, 1.0])},
        [1, 5],
        path,
    )


def test_save_metrics_file_is_byte_exact(tmp_path: Path) -> None:
    path = tmp_path / "metrics.txt"
    # A caller's print options must not leak into the file.
    with np.printoptions(precision=2, floatmode="fixed", sign="+"):
        _save_vector(str(path))
    assert path.read_bytes() == METRICS_TXT.encode()
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.txt"]  # no temporary left


def test_metrics_file_round_trips(tmp_path: Path) -> None:
    path = str(tmp_path / "metrics.txt")
    _save_vector(path)
    saved = read_metrics_file(path)
    mean_ap, pr_ranks, mean_p, mean_r = saved
    assert mean_ap == pytest.approx({"hard": 0.7, "medium": 0.9})
    assert pr_ranks == [1, 5]
    np.testing.assert_allclose(mean_p["hard"], [1.0, 0.8])
    np.testing.assert_allclose(mean_p["medium"], [1.0, 1.0])
    np.testing.assert_allclose(mean_r["hard"], [0.5, 0.8])
    np.testing.assert_allclose(mean_r["medium"], [0.5, 1.0])


def test_metrics_file_on_a_memory_url() -> None:
    url = "memory://retrieval-metrics-test/out/metrics.txt"
    _save_vector(url)
    assert read_metrics_file(url).pr_ranks == [1, 5]


def test_read_metrics_file_rejects_a_repeated_protocol(tmp_path: Path) -> None:
    path = tmp_path / "metrics.txt"
    medium = METRICS_TXT[METRICS_TXT.index("medium") :]
    path.write_text(medium + medium)
    with pytest.raises(ValueError, match="Malformed input"):
        read_metrics_file(str(path))


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ("medium\n  mAP=90.0\n  mP@k[1 5] [100. 100.]\n", "multiple of 4"),
        ("medium\n  mAP=x\n  mP@k[1 5] [1. 1.]\n  mR@k[1 5] [1. 1.]\n", "line 2"),
        ("medium\n  mAP=9\n  mR@k[1 5] [1. 1.]\n  mR@k[1 5] [1. 1.]\n", "line 3"),
        ("medium\n  mAP=9\n  mP@k[1 5] [1. 1.]\n  mR@k[1 10] [1. 1.]\n", "line 4"),
    ],
)
def test_read_metrics_file_names_the_bad_line(tmp_path: Path, text: str, where: str) -> None:
    path = tmp_path / "metrics.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"Malformed input .*{where}"):
        read_metrics_file(str(path))


def _medium(name: str):
    path = REVISITOP / name
    if not path.exists():
        pytest.skip(f"{path} is absent (test data from outside the project)")
    dataset = read_dataset_file(str(path))
    _, medium, _ = parse_easy_medium_hard(dataset.ground_truth)
    return len(dataset.index_list), medium


@pytest.mark.parametrize("name", ["gnd_roxford5k.pkl", "gnd_rparis6k.pkl"])
def test_real_ground_truth_perfect_ranking_scores_one(name: str) -> None:
    num_index, medium = _medium(name)
    # Junk first, then the positives, then the rest: junk is removed before scoring.
    ranked = np.stack(
        [
            np.concatenate(
                [t["junk"], t["ok"], np.setdiff1d(np.arange(num_index), [*t["ok"], *t["junk"]])]
            )
            for t in medium
        ]
    )
    metrics = compute_metrics(ranked, medium, PR_RANKS)
    assert metrics.mean_average_precision == 1.0
    np.testing.assert_array_equal(metrics.mean_precisions, [1.0, 1.0, 1.0])
    assert np.all(metrics.mean_recalls > 0) and np.all(metrics.mean_recalls <= 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_real_ground_truth_random_ranking_scores_about_0016(seed: int) -> None:
    num_index, medium = _medium("gnd_roxford5k.pkl")
    rng = np.random.default_rng(seed)
    ranked = np.stack([rng.permutation(num_index) for _ in medium])
    assert compute_metrics(ranked, medium, PR_RANKS).mean_average_precision == pytest.approx(
        0.016, abs=0.003
    )
