"""A step's progress artifact: updated while the step runs, one per step and flow run."""

from __future__ import annotations

import logging

import pytest
from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)
from prefect.context import get_run_context

from delf_core.training.config import TrainConfig
from flows.progress import RunProgress, progress_key
from flows.train import train_task

TRAIN_KEY = progress_key("train")


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_artifacts(flow_run_id, key: str) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=[key]),
            )
        )


def read_artifact(artifact_id):
    with get_client(sync_client=True) as client:
        return client.read_artifacts(artifact_filter=ArtifactFilter(id={"any_": [artifact_id]}))[0]


def test_keys_name_the_step_with_dashes():
    assert progress_key("build_image_dataset") == "gldv2-build-image-dataset-progress"
    assert progress_key("train") == "gldv2-train-progress"


def test_the_artifact_is_updated_while_the_step_runs(prefect_harness):
    seen = []

    @task
    def step() -> None:
        clock = Clock()
        progress = RunProgress("demo_step", 400, "records", clock=clock)
        for done in range(0, 401, 10):
            clock.now += 1
            progress.update(done)
            # What the UI shows now, while the step is still running.
            shown = read_artifact(progress._artifact_id)
            seen.append((shown.data, shown.description))

    @flow
    def demo() -> None:
        step()

    demo()

    percents = [data for data, _ in seen]
    assert percents == sorted(percents)
    assert len(set(percents)) >= 20  # every 10 of 400 records is more than 1%
    assert seen[-1] == (100.0, "400/400 records (100.0%), 10.0 records/s, ETA 0 s")


def test_a_retried_task_keeps_one_progress_artifact(prefect_harness):
    attempts = []

    @task(retries=1, retry_delay_seconds=0)
    def step() -> None:
        attempts.append(1)
        clock = Clock()
        # A retry resumes where the first attempt stopped, as training does.
        start = 0 if len(attempts) == 1 else 30
        progress = RunProgress("resumed_step", 100, "steps", done=start, clock=clock)
        for done in range(start + 10, 101, 10):
            clock.now += 2
            progress.update(done)
            if len(attempts) == 1 and done == 30:
                raise RuntimeError("preempted")

    @flow
    def resumed() -> None:
        step()

    state = resumed(return_state=True)

    assert state.is_completed() and len(attempts) == 2
    found = run_artifacts(state.state_details.flow_run_id, "gldv2-resumed-step-progress")
    assert len(found) == 1
    assert found[0].data == 100.0
    assert found[0].description.startswith("100/100 steps (100.0%)")


def test_a_failed_update_logs_a_warning_and_the_step_goes_on(prefect_harness, caplog):
    @task
    def step() -> float:
        progress = RunProgress("refused_step", 3, "files")
        progress.update(1)
        # Someone deletes the artifact in the UI: the server refuses the next update.
        with get_client(sync_client=True) as client:
            client.delete_artifact(progress._artifact_id)
        progress.update(2)
        progress.update(3)
        return progress.tracker.done

    @flow
    def refused() -> float:
        return step()

    with caplog.at_level(logging.INFO, logger="delf_core.progress"):
        assert refused() == 3
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "could not update the progress artifact" in warnings[0].getMessage()
    # The progress still reaches the log.
    assert any("refused_step: 3/3 files" in r.getMessage() for r in caplog.records)


def test_outside_a_run_progress_goes_to_the_log_only(caplog):
    progress = RunProgress("by_hand", 2, "files")
    with caplog.at_level(logging.INFO, logger="delf_core.progress"):
        progress.update(2)
    assert progress._artifact_id is None
    assert [r.getMessage() for r in caplog.records] == [
        "by_hand: 2/2 files (100.0%), rate not measured yet"
    ]


@pytest.mark.integration
def test_training_moves_its_artifact_between_reports(prefect_harness, mini_records, tmp_path):
    """With report_interval beyond the run, the artifact still follows every step."""
    seen: list[float] = []

    class ReadArtifact(logging.Handler):
        # Each progress line is logged just before its artifact update: read what the
        # UI shows at that moment, while the task is still training.
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage().startswith("train: "):
                found = run_artifacts(get_run_context().task_run.flow_run_id, TRAIN_KEY)
                seen.extend(artifact.data for artifact in found)

    config = TrainConfig(
        logdir=str(tmp_path / "logs"),
        train_file_pattern=f"{mini_records}/train*",
        validation_file_pattern=f"{mini_records}/validation*",
        dataset_version="manifest",
        image_size=32,
        batch_size=2,
        max_iters=6,
        report_interval=100,
        eval_interval=100,
        save_interval=100,
        num_eval_batches=1,
        use_autoencoder=False,
    )

    @flow
    def training() -> dict:
        return train_task(config)

    handler = ReadArtifact()
    progress_log = logging.getLogger("delf_core.progress")
    progress_log.addHandler(handler)
    try:
        state = training(return_state=True)
    finally:
        progress_log.removeHandler(handler)

    assert state.is_completed()
    # 0% at the start, then every step (each is more than 1% of 6), seen while training.
    assert seen == sorted(seen) and len(set(seen)) >= 5
    found = run_artifacts(state.state_details.flow_run_id, TRAIN_KEY)
    assert len(found) == 1 and found[0].data == 100.0
    assert found[0].description.startswith("6/6 steps (100.0%)")
