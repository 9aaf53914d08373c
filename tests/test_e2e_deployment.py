"""gldv2-mini through a real Prefect server: deploy, a process worker, `prefect deployment run`."""

from __future__ import annotations

import json

import pytest

from tests.server_process import prefect, prefect_server, process_worker

pytestmark = pytest.mark.e2e


@pytest.fixture()
def server_env(tmp_path):
    with prefect_server(tmp_path) as env:
        yield env


def test_gldv2_mini_deployment_runs_on_a_process_worker(server_env, tmp_path):
    env = server_env
    prefect(env, "work-pool", "create", "gldv2-process", "--type", "process")
    deployed = prefect(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    assert "gldv2/gldv2-mini" in deployed.stdout and "gldv2/gldv2-full" in deployed.stdout

    output_root = tmp_path / "gldv2_mini"
    with process_worker(env, tmp_path):
        run = prefect(
            env,
            "deployment",
            "run",
            "gldv2/gldv2-mini",
            "--param",
            f"output_root={output_root}",
            # The deployment's evaluation, less retrieval (tested in test_e2e_gldv2).
            "--param",
            "evaluate=" + json.dumps({"score_threshold": 0.5, "retrieval": False}),
            "--watch",
            "--watch-timeout",
            "1500",
            timeout=1600,
        )
    log = (tmp_path / "worker.log").read_text()
    assert "Completed" in run.stdout, run.stdout + log
    assert (output_root / "matched_images.png").exists(), log
    assert (output_root / "gldv2_training" / "delf_weights.index").exists()
    assert (output_root / "gldv2_model_local_and_global" / "saved_model.pb").exists()
