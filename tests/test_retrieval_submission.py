"""`delf make_retrieval_submission` on a hand-made case: ranking, CSV, scores, bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from delf_cli.main import main
from delf_core.features import datum_io
from delf_core.gldv2 import layout
from delf_core.retrieval.submission import (
    RetrievalSubmissionConfig,
    make_retrieval_submission,
    score_submission,
)

# Index images A, B, C, D; 2-d descriptors, so each similarity is easy to work out.
A, B, C, D = "a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2", "c3c3c3c3c3c3c3c3", "d4d4d4d4d4d4d4d4"
INDEX = {A: [1.0, 0.0], B: [0.0, 1.0], C: [0.6, 0.8], D: [0.8, 0.6]}
# Test images and their similarities to A, B, C, D.
TEST = {
    "1111111111111111": [1.0, 0.0],  # 1, 0, .6, .8 -> A D C B
    "2222222222222222": [0.0, 1.0],  # 0, 1, .8, .6 -> B C D A
    "3333333333333333": [-1.0, 0.0],  # -1, 0, -.6, -.8 -> B C D A
    "4444444444444444": [1.0, 1.0],  # 1, 1, 1.4, 1.4 -> C D A B (ties: lower index row first)
    "5555555555555555": [0.0, -1.0],  # 0, -1, -.8, -.6 -> A D C B
    "6666666666666666": [1.0, 0.0],  # as 1111...
}
EXPECTED_RANKING = {
    "1111111111111111": [A, D, C, B],
    "2222222222222222": [B, C, D, A],
    "3333333333333333": [B, C, D, A],
    "4444444444444444": [C, D, A, B],
    "5555555555555555": [A, D, C, B],
    "6666666666666666": [A, D, C, B],
}
SOLUTION = f"""id,images,Usage
1111111111111111,{D},Public
2222222222222222,{B} {D},Public
3333333333333333,{A},Private
4444444444444444,{C} {D},Private
5555555555555555,,Ignored
6666666666666666,None,Public
"""
# By hand, AP = sum of precision@i at each hit / min(#truth, 100):
#   1111: D at 2 -> (1/2) / 1 = 0.5;  2222: B at 1, D at 3 -> (1 + 2/3) / 2 = 5/6;
#   6666: no ground truth -> 0.       Public mAP = (0.5 + 5/6 + 0) / 3 = 4/9.
#   3333: A at 4 -> (1/4) / 1;  4444: C at 1, D at 2 -> (1 + 1) / 2 = 1.
#                                     Private mAP = (0.25 + 1) / 2 = 0.625.
PUBLIC_MAP, PRIVATE_MAP = 4 / 9, 0.625
# P@1: Public 2222 only (1/3), Private 4444 only (1/2).
PUBLIC_P1, PRIVATE_P1 = 1 / 3, 1 / 2


def write_split(root: Path, split: str, descriptors: dict[str, list[float]]) -> Path:
    """`<split>.csv` (id column) and features `<split>/a/b/c/<id>.delg_global`."""
    csv_path = root / f"{split}.csv"
    csv_path.write_text("id\n" + "".join(f"{i}\n" for i in descriptors))
    for image_id, values in descriptors.items():
        path = root / split / f"{layout.image_relpath(image_id, '')}.delg_global"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(datum_io.serialize_to_string(np.array(values, np.float32)))
    return csv_path


@pytest.fixture
def case(tmp_path):
    write_split(tmp_path, "test", TEST)
    write_split(tmp_path, "index", INDEX)
    (tmp_path / "solution.csv").write_text(SOLUTION)
    return tmp_path


def flags(root: Path, **more: str) -> list[str]:
    values = {
        "test_csv_path": root / "test.csv",
        "index_csv_path": root / "index.csv",
        "test_features_dir": root / "test",
        "index_features_dir": root / "index",
        "output_path": root / "predictions.csv",
        **more,
    }
    return [f"--{name}={value}" for name, value in values.items()]


def error_line(caplog) -> str:
    """The one error the command logged: a single line."""
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "\n" not in errors[0], errors
    caplog.clear()
    return errors[0]


def test_the_submission_ranks_by_hand_and_scores_as_computed_by_hand(case, capsys):
    assert main(["make_retrieval_submission", *flags(case)]) == 0
    assert "Wrote" in capsys.readouterr().out

    lines = (case / "predictions.csv").read_text().splitlines()
    assert lines[0] == "id,images"
    rows = dict(line.split(",") for line in lines[1:])
    assert list(rows) == list(TEST)  # test.csv's order
    assert {test_id: ids.split(" ") for test_id, ids in rows.items()} == EXPECTED_RANKING

    assert (
        main(
            [
                "compute_retrieval_metrics",
                f"--predictions_path={case / 'predictions.csv'}",
                f"--solution_path={case / 'solution.csv'}",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert f"(Public)  Mean Average Precision: {PUBLIC_MAP:f}" in printed, printed
    assert f"(Private) Mean Average Precision: {PRIVATE_MAP:f}" in printed, printed
    assert f"(Public)  Mean precisions: P@1: {100 * PUBLIC_P1:.2f}," in printed, printed

    scores = score_submission(str(case / "predictions.csv"), str(case / "solution.csv"))
    assert scores["public"]["mean_average_precision"] == pytest.approx(PUBLIC_MAP)
    assert scores["private"]["mean_average_precision"] == pytest.approx(PRIVATE_MAP)
    assert scores["private"]["mean_precisions"]["P@1"] == pytest.approx(PRIVATE_P1)
    # First hits: Public 1111 at 2, 2222 at 1, 6666 none (101); Private 3333 at 4, 4444 at 1.
    assert scores["public"]["mean_position"] == pytest.approx((2 + 1 + 101) / 3)
    assert scores["private"]["median_position"] == pytest.approx(2.5)


def test_scores_and_k_are_those_of_the_search(case):
    config = RetrievalSubmissionConfig(
        test_csv_path=str(case / "test.csv"),
        index_csv_path=str(case / "index.csv"),
        test_features_dir=str(case / "test"),
        index_features_dir=str(case / "index"),
        output_path=str(case / "top2.csv"),
        k=2,
        search_memory_bytes=64 * 1024,
    )
    result = make_retrieval_submission(config)
    f = np.float32
    assert result.top.scores.tolist() == [
        [1.0, f(0.8)],
        [1.0, f(0.8)],
        [0.0, f(-0.6)],
        [f(0.6) + f(0.8), f(0.8) + f(0.6)],
        [0.0, f(-0.6)],
        [1.0, f(0.8)],
    ]
    rows = (case / "top2.csv").read_text().splitlines()[1:]
    assert rows[3] == f"4444444444444444,{C} {D}"
    assert all(len(row.split(",")[1].split(" ")) == 2 for row in rows)


@pytest.mark.parametrize(
    "bad_id, reason",
    [
        ("../../etc/passwd", "holds '/'"),
        ("abc def0123456789", "holds ' '"),
        ("ab", "too short"),
        ("nul\x00abcdef0123456", "holds '\\x00'"),
    ],
)
def test_a_hostile_id_is_one_line_naming_the_row_and_writes_nothing(case, caplog, bad_id, reason):
    (case / "index.csv").write_text(f"id\n{A}\n{B}\n{bad_id}\n")
    assert main(["make_retrieval_submission", *flags(case)]) == 1
    err = error_line(caplog)
    assert f"{case / 'index.csv'}, line 4: image id {bad_id!r}" in err and reason in err, err
    assert not (case / "predictions.csv").exists()


def test_a_repeated_test_id_is_refused_naming_the_row(case, caplog):
    (case / "test.csv").write_text("id\n1111111111111111\n2222222222222222\n1111111111111111\n")
    assert main(["make_retrieval_submission", *flags(case)]) == 1
    assert "test.csv, line 4: image id 1111111111111111 is repeated" in error_line(caplog)


def test_a_missing_descriptor_file_is_one_line_naming_it(case, caplog):
    missing = case / "index" / f"{layout.image_relpath(C, '')}.delg_global"
    missing.unlink()
    assert main(["make_retrieval_submission", *flags(case)]) == 1
    assert error_line(caplog) == f"{missing}: no such global descriptor file"
    assert not (case / "predictions.csv").exists()


def test_flat_feature_names_and_a_missing_csv(case, caplog):
    for image_id in INDEX:
        source = case / "index" / f"{layout.image_relpath(image_id, '')}.delg_global"
        (case / "flat").mkdir(exist_ok=True)
        source.rename(case / "flat" / f"{image_id}.delg_global")
    args = flags(case, index_features_dir=case / "flat")
    assert main(["make_retrieval_submission", *args, "--features_layout=flat"]) == 1
    assert "no such global descriptor file" in error_line(caplog)  # test: a/b/c/ names
    for image_id in TEST:
        source = case / "test" / f"{layout.image_relpath(image_id, '')}.delg_global"
        source.rename(case / "flat" / f"{image_id}.delg_global")
    args = flags(case, index_features_dir=case / "flat", test_features_dir=case / "flat")
    assert main(["make_retrieval_submission", *args, "--features_layout=flat"]) == 0
    rows = (case / "predictions.csv").read_text().splitlines()
    assert rows[1] == f"1111111111111111,{A} {D} {C} {B}"

    assert main(["make_retrieval_submission", *flags(case, test_csv_path=case / "nope.csv")]) == 1
    assert "nope.csv" in error_line(caplog)


def test_a_rerun_keeps_a_current_csv_and_a_changed_descriptor_redoes_it(case, capsys):
    csv_path = case / "predictions.csv"
    assert main(["make_retrieval_submission", *flags(case)]) == 0
    assert (case / "predictions.csv.manifest.json").exists()
    written = csv_path.stat().st_mtime_ns
    capsys.readouterr()

    assert main(["make_retrieval_submission", *flags(case)]) == 0
    assert "is current" in capsys.readouterr().out
    assert csv_path.stat().st_mtime_ns == written

    # Test image 1111 now looks like B: its row changes, and so does the CSV.
    changed = case / "test" / f"{layout.image_relpath('1111111111111111', '')}.delg_global"
    changed.write_bytes(datum_io.serialize_to_string(np.array([0.0, 1.0], np.float32)))
    assert main(["make_retrieval_submission", *flags(case)]) == 0
    assert "Wrote" in capsys.readouterr().out
    assert csv_path.read_text().splitlines()[1] == f"1111111111111111,{B} {C} {D} {A}"
    # Another k is another CSV.
    assert main(["make_retrieval_submission", *flags(case), "--k=1"]) == 0
    assert csv_path.read_text().splitlines()[1] == f"1111111111111111,{B}"


@pytest.mark.parametrize(
    "content, message",
    [
        (b"id\n\xff\xfe\xfa\n", "index.csv: not UTF-8 text"),
        (b"name\nabc\n", "index.csv, line 1: header 'name' has no id column"),
        (b"id,url\nabcdef,x,y\n", "index.csv, line 2: 3 fields, expected 2"),
        (b"id\n", "index.csv: no image ids"),
    ],
)
def test_a_damaged_csv_is_one_line_naming_it(case, caplog, content, message):
    (case / "index.csv").write_bytes(content)
    assert main(["make_retrieval_submission", *flags(case)]) == 1
    assert message in error_line(caplog)
