"""The flow's make_retrieval_submission task: CSV, scores, summary artifact, cached rerun."""

from __future__ import annotations

import json
import pickle

import pytest
from prefect import flow

from delf_core.gldv2 import layout
from flows.retrieval_submission import SCORES_NAME, make_retrieval_submission_task
from tests.prefect_runs import artifacts, task_states
from tests.test_retrieval_submission import (
    EXPECTED_RANKING,
    INDEX,
    PRIVATE_MAP,
    PUBLIC_MAP,
    SOLUTION,
    TEST,
    write_split,
)

pytestmark = pytest.mark.integration
STEP = "make_retrieval_submission"
# What make_revisited_ground_truth keeps: the test images with retrieval ground truth.
QUERIES = ["1111111111111111", "2222222222222222", "3333333333333333", "4444444444444444"]


@flow
def submission_flow(root: str) -> dict:
    return make_retrieval_submission_task(
        f"{root}/gnd_gldv2.pkl",
        f"{root}/test",
        f"{root}/index",
        f"{root}/solution.csv",
        f"{root}/results",
    )


def test_the_step_writes_scores_publishes_and_is_cached(prefect_harness, tmp_path):
    write_split(tmp_path, "test", TEST)
    write_split(tmp_path, "index", INDEX)
    (tmp_path / "solution.csv").write_text(SOLUTION)
    names = lambda ids: [layout.image_relpath(i, "") for i in ids]  # noqa: E731
    gnd = [{"bbx": [0.0, 0.0, 1.0, 1.0], "easy": [0], "hard": [], "junk": []} for _ in QUERIES]
    (tmp_path / "gnd_gldv2.pkl").write_bytes(
        pickle.dumps({"qimlist": names(QUERIES), "imlist": names(INDEX), "gnd": gnd})
    )

    first = submission_flow(str(tmp_path), return_state=True)

    assert first.is_completed(), first.message
    result = first.result()
    rows = (tmp_path / "results" / "retrieval_submission.csv").read_text().splitlines()
    assert rows[0] == "id,images"
    assert {r.split(",")[0]: r.split(",")[1].split() for r in rows[1:]} == {
        q: EXPECTED_RANKING[q] for q in QUERIES
    }
    # The rows left out (no ground truth, Ignored) score 0 in a full submission too.
    assert result["public"]["mean_average_precision"] == pytest.approx(PUBLIC_MAP)
    assert result["private"]["mean_average_precision"] == pytest.approx(PRIVATE_MAP)
    saved = json.loads((tmp_path / "results" / SCORES_NAME).read_text())
    assert saved["public"] == result["public"] and saved["rows"] == 4
    summary = artifacts(first.state_details.flow_run_id)[f"gldv2-{STEP.replace('_', '-')}"]
    assert f"| Public | 3 | {100 * PUBLIC_MAP:.2f} |" in summary, summary
    assert f"| Private | 2 | {100 * PRIVATE_MAP:.2f} |" in summary, summary
    assert task_states(first, expect=[STEP]) == {STEP: "Completed"}

    second = submission_flow(str(tmp_path), return_state=True)

    assert task_states(second, expect=[STEP]) == {STEP: "Cached"}
    assert second.result()["public"] == result["public"]

    (tmp_path / "results" / "retrieval_submission.csv").unlink()
    third = submission_flow(str(tmp_path), return_state=True)
    assert task_states(third, expect=[STEP]) == {STEP: "Completed"}
    assert (tmp_path / "results" / "retrieval_submission.csv").exists()
