"""GLDv2 metrics: REFERENCE.md §8.5 vectors, the Kaggle CSV readers, the two commands."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pytest

from delf_cli import compute_recognition_metrics, compute_retrieval_metrics
from delf_cli import main as delf_main
from delf_core.retrieval import gldv2_metrics as gm
from delf_core.retrieval.gldv2_metrics import RecognitionPrediction as P


def q(n: int) -> str:
    """Query id q01..q05 of the original tests: 0123456789abcdef, 0223456789abcdef, ..."""
    return f"0{n}23456789abcdef"


def i(n: int) -> str:
    """Index id iNN: fedcba98765432NN."""
    return f"fedcba98765432{n:02d}"


RECOGNITION_SOLUTION = {q(1): [0, 12], q(2): [100, 200, 300], q(3): [1], q(4): [], q(5): []}
RECOGNITION_PREDICTIONS = {q(2): P(0, 0.01), q(3): P(1, 10.0), q(4): P(150, 15.0)}
RETRIEVAL_SOLUTION = {
    q(1): [i(10), i(20)],
    q(2): [i(10)],
    q(3): [i(30), i(40), i(50)],
    q(4): [i(30)],
}
RETRIEVAL_PREDICTIONS = {q(2): [i(0), i(10)], q(3): [i(40)], q(4): [i(30), i(40)]}


# --- §8.5 vectors -------------------------------------------------------------------


def test_global_average_precision() -> None:
    gap = gm.global_average_precision(RECOGNITION_PREDICTIONS, RECOGNITION_SOLUTION)
    assert gap == pytest.approx(0.166667, abs=1e-6)


def test_global_average_precision_ignoring_non_gt_images() -> None:
    gap = gm.global_average_precision(
        RECOGNITION_PREDICTIONS, RECOGNITION_SOLUTION, ignore_non_gt_test_images=True
    )
    assert gap == pytest.approx(0.333333, abs=1e-6)


def test_top1_accuracy() -> None:
    accuracy = gm.top1_accuracy(RECOGNITION_PREDICTIONS, RECOGNITION_SOLUTION)
    assert accuracy == pytest.approx(0.333333, abs=1e-6)


def test_gap_ties_break_by_id_then_class() -> None:
    # Equal scores: q01 ranks before q02, so its correct answer has precision 1/1.
    solution = {q(1): [5], q(2): [7]}
    predictions = {q(2): P(8, 1.0), q(1): P(5, 1.0)}
    assert gm.global_average_precision(predictions, solution) == pytest.approx(0.5)


def test_mean_average_precision() -> None:
    value = gm.mean_average_precision(RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION)
    assert value == pytest.approx(0.458333, abs=1e-6)
    value = gm.mean_average_precision(RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION, max_predictions=1)
    assert value == pytest.approx(0.5)


def test_mean_average_precision_skips_duplicates() -> None:
    # The repeat of i10 is no second hit, but it holds position 2: i20 is at 3.
    predictions = {q(1): [i(10), i(10), i(20)]}
    value = gm.mean_average_precision(predictions, {q(1): [i(10), i(20)]})
    assert value == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_mean_precisions() -> None:
    precisions = gm.mean_precisions(RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION, max_predictions=2)
    np.testing.assert_allclose(precisions, [0.5, 0.375])
    assert gm.mean_precisions(RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION).shape == (100,)


def test_mean_median_position() -> None:
    assert gm.mean_median_position(RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION) == pytest.approx(
        (26.25, 1.5)
    )
    assert gm.mean_median_position(
        RETRIEVAL_PREDICTIONS, RETRIEVAL_SOLUTION, max_predictions=1
    ) == pytest.approx((1.5, 1.5))


def test_predictions_outside_the_solution_are_rejected() -> None:
    with pytest.raises(ValueError, match="not part of the solution"):
        gm.mean_average_precision({q(9): [i(1)]}, RETRIEVAL_SOLUTION)
    with pytest.raises(ValueError, match="not part of the solution"):
        gm.global_average_precision({q(9): P(1, 1.0)}, RECOGNITION_SOLUTION)


def test_empty_solution_gives_nan_not_a_crash() -> None:
    assert np.isnan(gm.global_average_precision({}, {q(1): []}))
    assert np.isnan(gm.top1_accuracy({}, {}))
    assert np.isnan(gm.mean_average_precision({}, {}))
    assert np.isnan(gm.mean_median_position({}, {})).all()
    assert np.isnan(gm.mean_precisions({}, {}, max_predictions=3)).all()


# --- CSV readers --------------------------------------------------------------------


def write(path: Path, *lines: str) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    return str(path)


def test_read_recognition_solution(tmp_path: Path) -> None:
    path = write(
        tmp_path / "recognition_solution_v2.1.csv",
        "id,landmarks,Usage",
        f"{q(1)},0 12,Public",
        f"{q(2)},,Public",
        f"{q(3)},100,Ignored",
        f"{q(4)},1,Private",
        f"{q(5)},None,Ignored",
    )
    solution = gm.read_solution(path, gm.RECOGNITION)
    assert solution.public == {q(1): [0, 12], q(2): []}
    assert solution.private == {q(4): [1]}
    assert solution.ignored == [q(3), q(5)]


def test_read_retrieval_solution(tmp_path: Path) -> None:
    path = write(
        tmp_path / "retrieval_solution_v2.1.csv",
        "id,images,Usage",
        f"{q(1)},None,Ignored",
        f"{q(2)},{i(10)} {i(0)},Public",
        f"{q(3)},{i(0)},Private",
        "",
        f"{q(4)},{i(20)},Private",
        f"{q(5)},None,Ignored",
    )
    solution = gm.read_solution(path, gm.RETRIEVAL)
    assert solution.public == {q(2): [i(10), i(0)]}
    assert solution.private == {q(3): [i(0)], q(4): [i(20)]}
    assert solution.ignored == [q(1), q(5)]


def test_read_recognition_predictions(tmp_path: Path) -> None:
    solution = gm.Solution({q(1): [1], q(2): []}, {q(4): [0]}, [q(3), q(5)])
    path = write(
        tmp_path / "submission.csv",
        "id,landmarks",
        f"{q(1)},12 0.1 ",
        f"{q(4)},0 19.0",
        f"{q(2)},",
        "",
        f"{q(5)},14 0.01",
    )
    predictions = gm.read_predictions(path, solution, gm.RECOGNITION)
    assert predictions.public == {q(1): P(12, 0.1)}
    assert predictions.private == {q(4): P(0, 19.0)}


def test_read_retrieval_predictions(tmp_path: Path) -> None:
    solution = gm.Solution({q(2): [i(0)]}, {q(3): [i(0)], q(4): [i(0)]}, [q(1), q(5)])
    path = write(
        tmp_path / "submission.csv",
        "id,images",
        f"{q(1)},{i(50)} ",
        f"{q(4)},{i(60)}",
        f"{q(2)},{i(10)} {i(0)} {i(20)}",
        "",
        f"{q(5)},",
    )
    predictions = gm.read_predictions(path, solution, gm.RETRIEVAL)
    assert predictions.public == {q(2): [i(10), i(0), i(20)]}
    assert predictions.private == {q(4): [i(60)]}


@pytest.mark.parametrize(
    ("lines", "task", "match"),
    [
        (["id,images,Usage", f"{q(1)},{i(1)},Secret"], gm.RETRIEVAL, "line 2: .*Usage 'Secret'"),
        (["id,images,Usage", f"{q(1)},{i(1)}"], gm.RETRIEVAL, "line 2: 2 fields, expected 3"),
        (["id,images,Usage", "", f"{q(1)},a,Public", f"{q(1)},b,Public"], gm.RETRIEVAL, "line 4"),
        (["id,landmarks,Usage", f"{q(1)},one,Public"], gm.RECOGNITION, "line 2: .*not integers"),
        (["id,images", f"{q(1)},{i(1)}"], gm.RETRIEVAL, "line 1: header"),
        ([], gm.RETRIEVAL, "empty file"),
    ],
)
def test_read_solution_errors_name_file_and_line(
    tmp_path: Path, lines: list[str], task: str, match: str
) -> None:
    path = write(tmp_path / "solution.csv", *lines)
    with pytest.raises(ValueError, match=f"solution.csv.*{match}"):
        gm.read_solution(path, task)


@pytest.mark.parametrize(
    ("row", "task", "match"),
    [
        (f"{q(1)},12", gm.RECOGNITION, "line 3: landmarks must be '<landmark id> <score>'"),
        (f"{q(1)},12 0.5 3", gm.RECOGNITION, "line 3: landmarks must be"),
        (f"{q(1)},x 0.5", gm.RECOGNITION, "line 3: landmarks must be"),
        (f"{q(9)},{i(1)}", gm.RETRIEVAL, "line 3: test image .* is not in the solution"),
        (f"{q(2)},{i(1)}", gm.RETRIEVAL, "line 3: test image .* is repeated"),
    ],
)
def test_read_predictions_errors_name_file_and_line(
    tmp_path: Path, row: str, task: str, match: str
) -> None:
    solution = gm.Solution({q(1): [], q(2): []}, {}, [])
    column = gm.ANSWER_COLUMN[task]
    first = f"{q(2)},1 0.5" if task == gm.RECOGNITION else f"{q(2)},{i(1)}"
    path = write(tmp_path / "submission.csv", f"id,{column}", first, row)
    with pytest.raises(ValueError, match=f"submission.csv.*{match}"):
        gm.read_predictions(path, solution, task)


def test_readers_read_the_mini_dataset_ground_truth(mini_bucket: Path) -> None:
    truth = mini_bucket / "ground_truth"
    retrieval = gm.read_solution(str(truth / "retrieval_solution_v2.1.csv"), gm.RETRIEVAL)
    recognition = gm.read_solution(str(truth / "recognition_solution_v2.1.csv"), gm.RECOGNITION)
    for solution in (retrieval, recognition):
        assert solution.public and solution.private and solution.ignored
        assert all(solution.public.values()) and all(solution.private.values())
    index_ids = {
        line.split(",")[0]
        for line in (mini_bucket / "metadata" / "index.csv").read_text().splitlines()[1:]
    }
    for ids in [*retrieval.public.values(), *retrieval.private.values()]:
        assert set(ids) <= index_ids


# --- the commands -------------------------------------------------------------------


def run_command(module, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args(argv))


def test_retrieval_command_prints_public_and_private(tmp_path: Path, capsys) -> None:
    solution = write(
        tmp_path / "solution.csv",
        "id,images,Usage",
        f"{q(1)},{i(10)} {i(20)},Public",
        f"{q(2)},{i(10)},Private",
        f"{q(3)},None,Ignored",
    )
    predictions = write(
        tmp_path / "predictions.csv",
        "id,images",
        f"{q(1)},{i(20)} {i(0)} {i(10)}",
        f"{q(2)},{i(0)}",
        f"{q(3)},{i(10)}",
    )
    code = run_command(
        compute_retrieval_metrics,
        [f"--solution_path={solution}", "--predictions_path", predictions],
    )
    assert code == 0
    rule = "*" * 46
    assert capsys.readouterr().out.splitlines() == [
        "Reading solution...",
        "done!",
        "Reading predictions...",
        "done!",
        rule,
        "(Public)  Mean Average Precision: 0.833333",
        "(Private) Mean Average Precision: 0.000000",
        rule,
        "(Public)  Mean precisions: P@1: 100.00, P@5: 40.00, P@10: 20.00, P@50: 4.00, P@100: 2.00",
        "(Private) Mean precisions: P@1: 0.00, P@5: 0.00, P@10: 0.00, P@50: 0.00, P@100: 0.00",
        rule,
        "(Public)  Mean position: 1.00, median position: 1.00",
        "(Private) Mean position: 101.00, median position: 101.00",
    ]


def test_recognition_command_prints_public_and_private(tmp_path: Path, capsys) -> None:
    solution = write(
        tmp_path / "solution.csv",
        "id,landmarks,Usage",
        *(f"{q(n)},{' '.join(map(str, RECOGNITION_SOLUTION[q(n)]))},Public" for n in range(1, 6)),
        f"{q(6)},7,Private",
        f"{q(7)},None,Ignored",
    )
    predictions = write(
        tmp_path / "predictions.csv",
        "id,landmarks",
        *(f"{key},{p.landmark_id} {p.score}" for key, p in RECOGNITION_PREDICTIONS.items()),
        f"{q(6)},7 0.5",
        f"{q(7)},3 0.9",
    )
    code = run_command(
        compute_recognition_metrics,
        [f"--solution_path={solution}", f"--predictions_path={predictions}"],
    )
    assert code == 0
    out = capsys.readouterr().out.splitlines()
    assert out[5:7] == [
        "(Public)  Global Average Precision: 0.166667",
        "(Private) Global Average Precision: 1.000000",
    ]
    assert out[8:10] == [
        "(Public)  Global Average Precision ignoring non-landmark queries: 0.333333",
        "(Private) Global Average Precision ignoring non-landmark queries: 1.000000",
    ]
    assert out[11:] == ["(Public)  Top-1 accuracy: 33.33", "(Private) Top-1 accuracy: 100.00"]


def test_commands_score_a_perfect_submission_on_the_mini_dataset(
    mini_bucket: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    # Through `delf <command>` as the lead will register it.
    monkeypatch.setitem(delf_main.SUBCOMMANDS, "compute_retrieval_metrics", "retrieval metrics")
    monkeypatch.setitem(delf_main.SUBCOMMANDS, "compute_recognition_metrics", "recognition")
    truth = mini_bucket / "ground_truth"
    for task, command, column in (
        (gm.RETRIEVAL, "compute_retrieval_metrics", "images"),
        (gm.RECOGNITION, "compute_recognition_metrics", "landmarks"),
    ):
        solution_path = str(truth / f"{task}_solution_v2.1.csv")
        solution = gm.read_solution(solution_path, task)
        answers = {**solution.public, **solution.private}
        rows = [
            f"{key},{' '.join(ids) if task == gm.RETRIEVAL else f'{ids[0]} 1.0'}"
            for key, ids in answers.items()
        ]
        predictions = write(tmp_path / f"{task}.csv", f"id,{column}", *rows)
        argv = [command, f"--solution_path={solution_path}", f"--predictions_path={predictions}"]
        assert delf_main.main(argv) == 0
        out = capsys.readouterr().out
        if task == gm.RETRIEVAL:
            assert "(Public)  Mean Average Precision: 1.000000" in out
            assert "(Private) Mean Average Precision: 1.000000" in out
        else:
            assert "(Public)  Global Average Precision: 1.000000" in out
            assert "(Private) Top-1 accuracy: 100.00" in out


@pytest.mark.parametrize("module", [compute_retrieval_metrics, compute_recognition_metrics])
def test_commands_report_a_missing_file_in_one_line(tmp_path: Path, capsys, module) -> None:
    missing = str(tmp_path / "nope.csv")
    assert run_command(module, [f"--solution_path={missing}"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"--solution_path: no such file: {missing}" in err


def test_commands_report_a_malformed_row_in_one_line(tmp_path: Path, capsys) -> None:
    solution = write(tmp_path / "solution.csv", "id,landmarks,Usage", f"{q(1)},1,Public")
    predictions = write(tmp_path / "bad.csv", "id,landmarks", f"{q(1)},1")
    argv = [f"--solution_path={solution}", f"--predictions_path={predictions}"]
    assert run_command(compute_recognition_metrics, argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("delf compute_recognition_metrics: error: --predictions_path: ")
    assert f"{predictions}, line 2: landmarks must be" in err
