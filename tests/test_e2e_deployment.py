"""gldv2-mini through a real Prefect server: deploy, a process worker, `prefect deployment run`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))


def wait_for_health(api_url: str, process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"prefect server not healthy within {seconds} s")


@pytest.fixture()
def prefect_server(tmp_path):
    """`prefect server start` on 127.0.0.1 with its own home; yields the client env."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "INFO",
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_health(env["PREFECT_API_URL"], server, 300)
        yield env
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def prefect(env, *args, timeout=600) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [PREFECT, "--no-prompt", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done


def test_gldv2_mini_deployment_runs_on_a_process_worker(prefect_server, tmp_path):
    env = prefect_server
    prefect(env, "work-pool", "create", "gldv2-process", "--type", "process")
    deployed = prefect(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    assert "gldv2/gldv2-mini" in deployed.stdout and "gldv2/gldv2-full" in deployed.stdout

    worker_log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", "gldv2-process", "--limit", "1"],
        cwd=tmp_path,
        env=env,
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )
    output_root = tmp_path / "gldv2_mini"
    try:
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
    finally:
        worker.terminate()
        worker.wait(30)
        worker_log.close()
    log = (tmp_path / "worker.log").read_text()
    assert "Completed" in run.stdout, run.stdout + log
    assert (output_root / "matched_images.png").exists(), log
    assert (output_root / "gldv2_training" / "delf_weights.index").exists()
    assert (output_root / "gldv2_model_local_and_global" / "saved_model.pb").exists()
