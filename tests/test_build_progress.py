"""The build reports images done while its Beam job runs, from the shard writers' counts."""

from __future__ import annotations

import threading

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
)

import beam_jobs.build_image_dataset as build_job
from beam_jobs.build_image_dataset import run_build
from delf_core.build_image_dataset import BuildConfig, plan_build
from delf_core.build_image_dataset.progress import ShardProgress, images_done
from flows.build_image_dataset import build_image_dataset
from flows.progress import progress_key

pytestmark = pytest.mark.integration


def mini_config(mini_gldv2, out) -> BuildConfig:
    return BuildConfig(
        train_directory=f"{mini_gldv2}/train/*/*/*/",
        train_clean_csv_path=f"{mini_gldv2}/train/train_clean.csv",
        output_directory=str(out),
        num_shards=3,
        generate_train_validation_splits=True,
    )


def test_progress_rises_during_the_job_and_ends_at_the_planned_images(
    mini_gldv2, tmp_path, monkeypatch
):
    config = mini_config(mini_gldv2, tmp_path / "records")
    planned = sum(plan_build(config).counts().values())
    calls: list[tuple[int, int]] = []
    seen_midway = threading.Event()
    lock = threading.Lock()
    finished_shards = []
    real_write_shard = build_job.write_shard

    def on_progress(done: int, total: int) -> None:
        calls.append((done, total))
        if 0 < done < total:
            seen_midway.set()

    def paced_write_shard(shard, *args, **kwargs):
        # Once a shard with images is written, the next one waits until the launcher
        # has read a count between none and all: the job is seen midway, at any speed.
        with lock:
            hold = bool(shard.images) and bool(finished_shards)
        if hold:
            assert seen_midway.wait(timeout=300), "no progress read while the job ran"
        result = real_write_shard(shard, *args, **kwargs)
        if shard.images:
            with lock:
                finished_shards.append(shard.name)
        return result

    monkeypatch.setattr(build_job, "write_shard", paced_write_shard)
    manifest = run_build(config, on_progress=on_progress, progress_seconds=0.05)

    assert calls[0] == (0, planned) and calls[-1] == (planned, planned)
    assert any(0 < done < planned for done, _ in calls)
    dones = [done for done, _ in calls]
    assert dones == sorted(dones)
    assert {total for _, total in calls} == {planned}
    written = sum(split["records"] for split in manifest["splits"].values())
    assert written == planned  # the mini dataset has no bad image


def test_an_identical_build_reports_itself_done_at_once(mini_gldv2, tmp_path):
    config = mini_config(mini_gldv2, tmp_path / "records")
    run_build(config)
    calls = []
    run_build(config, on_progress=lambda done, total: calls.append((done, total)))
    planned = sum(plan_build(config).counts().values())
    assert calls == [(planned, planned)]


def test_shard_counts_are_kept_whole_and_a_restarted_shard_starts_over(tmp_path):
    now = [0.0]
    work = str(tmp_path / "work")
    first = ShardProgress(work, "train-00000-of-00002", every_seconds=5, clock=lambda: now[0])
    for _ in range(3):
        first.image_done()
    assert images_done(work) == 0  # not yet 5 s since the last write
    now[0] += 5
    first.image_done()
    assert images_done(work) == 4
    other = ShardProgress(work, "train-00001-of-00002", every_seconds=5, clock=lambda: now[0])
    other.image_done()
    other.flush()
    assert images_done(work) == 5
    # A retried bundle writes its shard again from the first image.
    ShardProgress(work, "train-00000-of-00002", every_seconds=5, clock=lambda: now[0])
    assert images_done(work) == 1


def test_the_build_flow_ends_with_one_full_progress_artifact(prefect_harness, mini_gldv2, tmp_path):
    config = mini_config(mini_gldv2, tmp_path / "records")
    planned = sum(plan_build(config).counts().values())

    state = build_image_dataset(config, return_state=True)

    assert state.is_completed()
    with get_client(sync_client=True) as client:
        [progress] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                key=ArtifactFilterKey(any_=[progress_key("build_image_dataset")]),
                flow_run_id=ArtifactFilterFlowRunId(any_=[state.state_details.flow_run_id]),
            )
        )
    assert progress.data == 100.0
    assert progress.description.startswith(f"{planned}/{planned} images (100.0%)")
