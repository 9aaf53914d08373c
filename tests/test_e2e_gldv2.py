"""The whole gldv2 flow on the mini dataset: outputs, cached reruns, deleted outputs, retries."""

from __future__ import annotations

import datetime
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL

from delf_core import records
from delf_core.features import feature_io
from delf_core.gldv2 import layout
from delf_core.gldv2.mirror import MirrorServer
from delf_core.retrieval.metrics import read_metrics_file
from flows.gldv2 import gldv2
from tests.bucket import FaultyHandler, tar_requests
from tests.prefect_runs import artifacts, task_runs

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]

# A DELG model of two steps on 64 px images; two scales rather than seven for retrieval.
# Attention of so young a model sits near softplus(0) = 0.69: the seed's thresholds
# (100 and 175) would keep no feature. Deterministic, as the gldv2-mini deployment.
TINY_TRAIN = {
    "delg_global_features": True,
    "batch_size": 4,
    "max_iters": 2,
    "image_size": 64,
    "dataset_version": "manifest",
    "num_eval_batches": 1,
    "deterministic": True,
}
SMALL_EVALUATE = {
    "score_threshold": 0.5,
    "retrieval_score_threshold": 0.5,
    "retrieval_image_scales": [0.5, 1.0],
}
# Every step of a full run, by the name of its task.
STEPS = (
    "make_mini_dataset",
    "download",
    "build_image_dataset",
    "train",
    "export_local_and_global_model",
    "extract_features",
    "match_images",
    "make_revisited_ground_truth",
    "extract_features-query",
    "extract_features-index",
    "perform_retrieval",
    "make_retrieval_submission",
)
# The tar downloads of the runs below (2 train, 1 index and 1 test tar).
DOWNLOADS = tuple(
    f"download-{split}-{layout.tar_name(i)}"
    for split, count in (("train", 2), ("index", 1), ("test", 1))
    for i in range(count)
)
TASKS = DOWNLOADS + tuple(step for step in STEPS if step != "download")


def step_states(flow_run_id, since=None, expect=TASKS) -> dict[str, str]:
    """{step: Completed if any of its task runs ran, else the state they share}.

    The download tars count as one step, `download`. A step called twice in one run
    (the export that both the test and the retrieval use) runs once, then is Cached.
    Waits until the task runs named in `expect` are recorded.
    """
    states: dict[str, set[str]] = {}
    for run in task_runs(flow_run_id, since, expect=expect):
        step = "download" if run.name.startswith("download-") else run.name
        states.setdefault(step, set()).add(run.state.name)
    return {
        step: "Completed" if "Completed" in names else "/".join(sorted(names))
        for step, names in states.items()
    }


@pytest.fixture(scope="module")
def first_run(prefect_harness, tmp_path_factory):
    root = tmp_path_factory.mktemp("gldv2_run")
    params = dict(
        output_root=str(root),
        download={"num_train": 2, "num_index": 1, "num_test": 1, "mini_mirror": True},
        build={"num_shards": 3},
        train=TINY_TRAIN,
        evaluate=SMALL_EVALUATE,
    )
    state = gldv2(**params, return_state=True)
    return root, params, state


def test_the_whole_flow_completes_and_every_output_is_valid(first_run):
    root, _, state = first_run
    assert state.is_completed(), state.message
    result = state.result()
    states = step_states(state.state_details.flow_run_id)
    assert {step: states.get(step) for step in STEPS} == dict.fromkeys(STEPS, "Completed")

    # The shards parse, and hold every record the manifest counts.
    tfrecords = root / "gldv2_dataset" / "tfrecord"
    for split in ("train", "validation", "test"):
        shards = sorted(tfrecords.glob(f"{split}-*-of-00003"))
        assert len(shards) == 3
        parsed = [records.parse_example(r) for r in tf.data.TFRecordDataset(list(map(str, shards)))]
        assert len(parsed) == result["tfrecords"]["splits"][split]["records"] > 0
    # The export loads and extracts.
    export = root / "gldv2_model_local_and_global"
    model = tf.saved_model.load(str(export))
    assert "serving_default" in model.signatures
    # Features exist and read; the picture is a PNG; metrics.txt parses.
    delf_files = sorted((root / "data" / "features").glob("*.delf"))
    assert len(delf_files) == 2
    assert len(feature_io.read_from_file(str(delf_files[0])).locations) > 0
    assert (root / "matched_images.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = list((root / "data" / "gldv2_features" / "index").rglob("*.delg_global"))
    assert len(index) == 24
    metrics = read_metrics_file(str(root / "results" / "gldv2" / "metrics.txt"))
    assert metrics.mean_average_precision["medium"] > 0
    assert result["outputs"]["metrics"] == str(root / "results" / "gldv2" / "metrics.txt")
    assert result["outputs"]["matched_images"] == str(root / "matched_images.png")
    # The UI's view: training progress at its end, a summary per step, where outputs are.
    shown = artifacts(state.state_details.flow_run_id)
    assert shown["gldv2-train-progress"] == 100.0
    assert shown["gldv2-download-progress"] == 100.0
    for step in ("download", "build-image-dataset", "train", "match-images", "run"):
        assert f"gldv2-{step}" in shown
    assert all(key.startswith("gldv2-") for key in shown), sorted(shown)
    run = shown["gldv2-run"]
    assert "metrics.txt" in run and "tensorboard --logdir" in shown["gldv2-train"]
    for step in ("build_image_dataset", "train", "check_model"):
        assert f"| {step} | Completed | ran |" in run, run
    # Its export is check_model's, from cache; its figures are the mAPs.
    assert "| perform_retrieval | Completed | ran 4, cached 1 |" in run, run
    assert "medium mAP " in run
    # The challenge's submission of the same features, scored against the solution.
    submission = root / "results" / "gldv2" / "retrieval_submission.csv"
    assert result["outputs"]["retrieval_submission"] == str(submission)
    rows = submission.read_text().splitlines()
    assert rows[0] == "id,images" and len(rows) == 1 + 8
    assert all(len(row.split(",")[1].split()) == 24 for row in rows[1:])
    public = result["retrieval_submission"]["public"]["mean_average_precision"]
    assert "| make_retrieval_submission | Completed | ran |" in run, run
    assert f"public mAP@100 {100 * public:.2f}" in run, run
    assert "gldv2-make-retrieval-submission" in shown


def _files(root: Path, pattern: str) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.glob(pattern))}


def test_a_second_run_elsewhere_redoes_every_step_and_gives_the_same_figures(first_run, tmp_path):
    root, params, state = first_run
    assert state.is_completed()

    again = gldv2(**{**params, "output_root": str(tmp_path)}, return_state=True)
    assert again.is_completed(), again.message
    states = step_states(again.state_details.flow_run_id)
    assert {step: states.get(step) for step in STEPS} == dict.fromkeys(STEPS, "Completed")
    # Each step's output, from the records to the metrics, is the same bytes.
    for pattern in (
        "gldv2_dataset/tfrecord/*-of-*",
        "data/gldv2_features/*/**/*.delg_*",
        "data/features/*.delf",
        "results/gldv2/metrics.txt",
        "results/gldv2/retrieval_submission.csv",
    ):
        first, second = _files(root, pattern), _files(tmp_path, pattern)
        assert first and first.keys() == second.keys(), pattern
        assert [name for name in first if first[name] != second[name]] == [], pattern
    weights = [
        tf.train.load_checkpoint(str(r / "gldv2_training" / "delf_weights"))
        for r in (root, tmp_path)
    ]
    for name in sorted(weights[0].get_variable_to_shape_map()):
        assert np.array_equal(weights[0].get_tensor(name), weights[1].get_tensor(name)), name
    first_result, second_result = state.result(), again.result()
    assert first_result["check_model"]["num_inliers"] == second_result["check_model"]["num_inliers"]
    assert (
        first_result["retrieval"]["mean_average_precision"]
        == second_result["retrieval"]["mean_average_precision"]
    )


def test_a_rerun_is_cached_and_a_deleted_output_reruns_its_step_and_later_ones(first_run):
    root, params, state = first_run
    assert state.is_completed()

    again = gldv2(**params, return_state=True)
    assert again.is_completed(), again.message
    states = step_states(again.state_details.flow_run_id)
    assert {step: states.get(step) for step in STEPS} == dict.fromkeys(STEPS, "Cached")
    # The rerun's own summary says so.
    run = artifacts(again.state_details.flow_run_id)["gldv2-run"]
    for step in ("build_image_dataset", "train", "check_model", "perform_retrieval"):
        assert f"| {step} | Completed | cached |" in run, run

    # The TFRecords go: they are built again, and every step that depends on them is
    # redone; the steps they depend on are not.
    shutil.rmtree(root / "gldv2_dataset" / "tfrecord")
    third = gldv2(**params, return_state=True)
    assert third.is_completed(), third.message
    states = step_states(third.state_details.flow_run_id)
    # The ground truth comes from the downloaded CSVs, not from the TFRecords.
    before = ("make_mini_dataset", "download", "make_revisited_ground_truth")
    after = tuple(step for step in STEPS if step not in before)
    assert {step: states.get(step) for step in before} == dict.fromkeys(before, "Cached")
    assert {step: states.get(step) for step in after} == dict.fromkeys(after, "Completed")

    # And then all is done again. The build's cache record still holds the first
    # build's manifest; training must go by the manifest on disk, not by that record.
    fourth = gldv2(**params, return_state=True)
    assert fourth.is_completed(), fourth.message
    states = step_states(fourth.state_details.flow_run_id)
    assert {step: states.get(step) for step in STEPS} == dict.fromkeys(STEPS, "Cached")


def test_a_tar_failing_beyond_its_retries_fails_the_run_and_a_retry_redoes_only_that(
    prefect_harness, mini_bucket, tmp_path
):
    failing = layout.tar_bucket_path(layout.TRAIN, 1)
    # More 500s than every attempt's requests; the mirror recovers at reset().
    FaultyHandler.reset({failing: ["500"] * 50})
    params = dict(
        output_root=str(tmp_path),
        download={"num_train": 2, "num_index": 1, "num_test": 1, "retries": 1},
        build={"num_shards": 2},
        train=None,
    )
    with MirrorServer(mini_bucket, handler=FaultyHandler) as server:
        params["download"]["base_url"] = server.url
        state = gldv2(**params, return_state=True)
        assert state.is_failed()
        assert "download-train-images_001.tar" in state.message
        flow_run_id = state.state_details.flow_run_id
        failed = [r.name for r in task_runs(flow_run_id, expect=DOWNLOADS) if r.state.is_failed()]
        assert failed == ["download-train-images_001.tar"]
        assert not (tmp_path / "gldv2_dataset" / "tfrecord").exists()

        FaultyHandler.reset()
        retried_at = datetime.datetime.now(datetime.UTC)
        env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
        retry = subprocess.run(
            [
                str(Path(sys.executable).with_name("prefect")),
                "flow-run",
                "retry",
                str(flow_run_id),
                "--entrypoint",
                "flows/gldv2.py:gldv2",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=1500,
        )
    assert retry.returncode == 0, retry.stdout + retry.stderr
    with get_client(sync_client=True) as client:
        assert client.read_flow_run(flow_run_id).state.is_completed()
    # Only the failed tar was fetched again; the others are Cached; the build ran.
    assert [path for path, _ in tar_requests()] == [failing]
    downloads = {
        r.name: r.state.name
        for r in task_runs(flow_run_id, since=retried_at, expect=DOWNLOADS)
        if r.name.startswith("download-")
    }
    assert downloads.pop("download-train-images_001.tar") == "Completed"
    assert set(downloads.values()) == {"Cached"} and len(downloads) == 3
    states = step_states(flow_run_id, since=retried_at, expect=("build_image_dataset",))
    assert states["build_image_dataset"] == "Completed"
    assert (tmp_path / "gldv2_dataset" / "tfrecord" / "build_image_dataset_manifest.json").exists()
