"""The steps' summary artifacts and the training progress artifact, without running a step."""

from __future__ import annotations

import time

from prefect import flow, task
from prefect.cache_policies import INPUTS
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

from delf_core.training.config import TrainConfig
from delf_core.training.outputs import TrainResult
from flows.progress import progress_key
from flows.run_summary import COUNTED, RunSummary
from flows.summary import artifact_key, capped, format_duration, publish_summary
from flows.train import TrainingProgress, publish_train_summary

PROGRESS_KEY = progress_key("train")


def latest_artifact(key: str):
    """The newest version of the artifact `key`."""
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    assert found, f"no artifact {key}"
    return max(found, key=lambda a: a.created)


def test_keys_hold_only_lowercase_letters_digits_and_dashes():
    assert artifact_key("build_image_dataset") == "gldv2-build-image-dataset"
    assert artifact_key("Export local_and_global!") == "gldv2-export-local-and-global"
    assert artifact_key("train", "progress") == "gldv2-train-progress"


def test_durations_and_capped_lists_read_well():
    assert [format_duration(s) for s in (4.24, 185, 7620)] == ["4.2 s", "3 min 05 s", "2 h 07 min"]
    names = (f"img{i}" for i in range(30))
    assert capped(names, 30, limit=2) == ["img0", "img1", "... and 28 more"]
    assert capped(["a"], 1) == ["a"]


def test_publish_summary_shows_title_facts_duration_table_and_notes(prefect_harness):
    @flow
    def step_flow() -> None:
        publish_summary(
            "extract_index",
            {"images extracted": 24, "score": 0.123456, "output": "`a|b`"},
            # Long enough ago that a stalled machine cannot change the minute shown.
            started=time.monotonic() - 7620,
            notes=["failed: `x`: bad\njpeg"],
            table=[{"protocol": "medium", "mAP": "12.50"}, {"protocol": "hard"}],
        )

    step_flow()

    markdown = latest_artifact("gldv2-extract-index").data
    assert markdown.startswith("### extract_index\n")
    assert "| images extracted | 24 |" in markdown
    assert "| score | 0.1235 |" in markdown
    assert "`a\\|b`" in markdown  # a pipe would split the cell
    assert "| duration | 2 h 07 min |" in markdown
    assert "| protocol | mAP |" in markdown and "| hard |  |" in markdown
    assert markdown.rstrip().endswith("- failed: `x`: bad jpeg")


def test_training_progress_starts_at_the_resumed_step_and_shows_rate_eta_and_loss(
    prefect_harness,
):
    now = [0.0]

    @flow
    def resumed_training() -> None:
        progress = TrainingProgress(clock=lambda: now[0])
        # The loop's first calls: the step restored from the checkpoint, no metrics yet.
        progress.report(40, 100, {})
        progress.steps(40, 100)
        started = latest_artifact(PROGRESS_KEY)
        assert started.data == 40.0
        assert started.description == "40/100 steps (40.0%), rate not measured yet"
        now[0] += 120  # the first call traces the graph: left out of the rate
        progress.steps(45, 100)
        now[0] += 5
        progress.report(50, 100, {"loss/total": 1.23456, "global_steps_per_sec": 1.0})
        progress.steps(50, 100)

    resumed_training()

    progress = latest_artifact(PROGRESS_KEY)
    assert progress.data == 50.0
    assert progress.description == "50/100 steps (50.0%), 1.0 steps/s, ETA 50 s; loss 1.2346"


def test_train_summary_names_steps_rate_logdir_and_metrics(prefect_harness):
    result = TrainResult(
        step=100,
        metrics={"loss/total": 0.5, "global_steps_per_sec": 2.0},
        resumed_from=40,
    )

    @flow
    def trained() -> None:
        publish_train_summary(TrainConfig(logdir="gs://b/logs", batch_size=4), result, 0.0)

    trained()

    markdown = latest_artifact("gldv2-train").data
    for row in (
        "| final step | 100 of 500000 |",
        "| resumed from | 40 |",
        "| images/s | 8.0 |",
        "| logdir | `gs://b/logs` |",
        "| loss/total | 0.5 |",
    ):
        assert row in markdown, markdown
    assert "global_steps_per_sec" not in markdown


def test_the_run_summary_says_what_ran_what_was_cached_and_what_failed(prefect_harness, tmp_path):
    marker = tmp_path / "calls"

    @task(cache_policy=INPUTS, persist_result=True, **COUNTED)
    def work(n: int) -> int:
        with marker.open("a") as handle:
            handle.write(f"{n}\n")
        return n

    @task(**COUNTED)
    def broken() -> None:
        raise ValueError("bad input")

    @flow
    def pipeline(salt: int, fail: bool) -> None:
        summary = RunSummary()
        try:
            with summary.step("first", output="/out/first") as row:
                row.figures = f"{work(salt) + work(salt + 1)} made"
            if fail:
                with summary.step("second"):
                    broken()
            summary.skipped("third", "not asked for")
        finally:
            summary.publish({"first": "/out/first"}, time.monotonic())

    salt = time.monotonic_ns()  # no cache record from an earlier session
    pipeline(salt, fail=False)
    ran = latest_artifact("gldv2-run").data
    assert (
        "| first | Completed | ran | " in ran and f"| {2 * salt + 1} made | `/out/first` |" in ran
    )
    assert "| third | Skipped | - |" in ran and "not asked for" in ran
    assert "- first: `/out/first`" in ran

    pipeline(salt, fail=False)
    assert "| first | Completed | cached | " in latest_artifact("gldv2-run").data
    assert len(marker.read_text().split()) == 2  # the rerun's tasks did not run

    state = pipeline(salt + 1, fail=True, return_state=True)
    assert state.is_failed()
    failed = latest_artifact("gldv2-run").data
    assert "| first | Completed | ran 1, cached 1 | " in failed
    assert "| second | Failed | ran |" in failed and "| third |" not in failed
