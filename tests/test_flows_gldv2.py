"""The gldv2 flow (download, build_image_dataset, train, test the model) under Prefect's harness."""

from __future__ import annotations

import json

import pytest
from prefect.client.orchestration import get_client

from delf_core.gldv2.mirror import MirrorServer
from delf_core.training.config import TrainConfig
from flows.check_model import ModelCheck
from flows.gldv2 import gldv2
from flows.perform_retrieval import RetrievalCheck

pytestmark = pytest.mark.integration


def task_states_of_subflows(flow_state) -> dict[str, str]:
    """Names and states of the task runs of a flow run and of its subflow runs."""
    with get_client(sync_client=True) as client:
        flow_runs = client.read_flow_runs()
        tasks = client.read_task_runs()
    subflow_parents = {run.parent_task_run_id: run.id for run in flow_runs}
    ids = {flow_state.state_details.flow_run_id}
    ids |= {
        child
        for parent, child in subflow_parents.items()
        if any(t.id == parent and t.flow_run_id in ids for t in tasks)
    }
    return {
        t.name: t.state.name
        for t in tasks
        if t.flow_run_id in ids and t.id not in subflow_parents  # a subflow's stand-in task
    }


def test_gldv2_flow_downloads_builds_trains_tests_and_a_rerun_is_cached(
    prefect_harness, mini_bucket, tmp_path
):
    dataset = tmp_path / "gldv2_dataset"
    training = TrainConfig(
        logdir=str(tmp_path / "logs"),
        dataset_version="manifest",
        image_size=32,
        batch_size=2,
        max_iters=2,
        report_interval=2,
        eval_interval=2,
        save_interval=2,
        num_eval_batches=1,
    )
    with MirrorServer(mini_bucket) as server:
        params = dict(
            num_train=2,
            num_index=1,
            num_test=1,
            dataset_dir=str(dataset),
            base_url=server.url,
            num_shards=3,
            train=training,
            # Attention after 2 steps sits near softplus(0) = 0.69: the seed's 100 keeps none.
            test_model=ModelCheck(score_threshold=0.5),
            # A DELF model: no global descriptor, so retrieval is skipped (see
            # test_flows_retrieval for a DELG model).
            retrieval=RetrievalCheck(),
        )
        first = gldv2(**params, return_state=True)
        assert first.is_completed()
        result = first.result()
        assert result["tfrecords"]["splits"]["test"]["records"] == 16
        assert result["train"]["step"] == 2
        assert (tmp_path / "logs" / "delf_weights.index").exists()
        tested = result["test_model"]
        assert tested["exports"] == {"local": str(tmp_path / "gldv2_model_local")}
        assert tested["num_inliers"] >= 0 and (tmp_path / "matched_images.png").exists()
        assert "no global descriptor" in result["retrieval"]["skipped"]
        assert len(list((tmp_path / "data" / "features").glob("*.delf"))) == 2
        assert sorted(p.name for p in (dataset / "tfrecord").glob("validation-*")) == [
            f"validation-0000{i}-of-00003" for i in range(3)
        ]
        manifest_path = dataset / "tfrecord" / "build_image_dataset_manifest.json"
        written = manifest_path.stat().st_mtime_ns

        second = gldv2(**params, return_state=True)

    assert second.is_completed()
    assert manifest_path.stat().st_mtime_ns == written
    states = task_states_of_subflows(second)
    build = [state for name, state in states.items() if name.startswith("build_image_dataset")]
    tars = [state for name, state in states.items() if name.startswith("download-")]
    assert build == ["Cached"]
    assert [s for n, s in states.items() if n.startswith("train")] == ["Cached"]
    assert tars == ["Cached"] * 4
    steps = ("export-local", "extract_features", "match_images")
    assert {name: states.get(name) for name in steps} == dict.fromkeys(steps, "Cached")
    assert json.loads(manifest_path.read_text())["splits"]["train"]["records"] > 0
