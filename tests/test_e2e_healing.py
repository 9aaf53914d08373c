"""A gldv2-mini run whose process is killed in training heals itself through the server.

`deployments/deploy.sh` (what `make deploy` runs) sets up a real server; a process worker
runs the deployment; the test kills the flow run's process once training has written a
checkpoint, and then only watches: the automation puts the run back to Scheduled, the
worker runs it again, and training resumes from its checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path
from uuid import UUID

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
from prefect.settings import PREFECT_API_URL, temporary_settings

from delf_core.output_lease import LEASE_FILE
from flows.healing import RESUME_STATE_NAME
from tests.prefect_runs import task_runs
from tests.server_process import PREFECT, REPO, prefect, prefect_server, process_worker

pytestmark = pytest.mark.e2e

# Hang guards, generous for a loaded 2-core machine; each can be raised from the
# environment.
UNTIL_CHECKPOINT = float(os.environ.get("DELF_TEST_HEAL_CHECKPOINT_SECONDS", 900))
UNTIL_HEALED = float(os.environ.get("DELF_TEST_HEAL_SECONDS", 900))
MAX_ITERS = 20
TRAIN = {
    "delg_global_features": True,
    "batch_size": 4,
    "max_iters": MAX_ITERS,
    "image_size": 64,
    "dataset_version": "manifest",
    "num_eval_batches": 1,
    "save_interval": 5,
    "report_interval": 5,
}
RESUMED_FROM = re.compile(r"resumed from step (\d+)")
CHECKPOINT_STEP = re.compile(r'^model_checkpoint_path: "ckpt-(\d+)"', re.MULTILINE)


class CheckpointWatch(threading.Thread):
    """Records every checkpoint step the logdir shows, in order, until stopped."""

    def __init__(self, logdir: Path):
        super().__init__(daemon=True)
        self.state_file = logdir / "delf_tf2-ckpt" / "checkpoint"
        self.steps: list[int] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):  # samples the file; not a wait for a condition
            try:
                found = CHECKPOINT_STEP.search(self.state_file.read_text())
            except FileNotFoundError:
                continue
            if found and (not self.steps or self.steps[-1] != int(found[1])):
                self.steps.append(int(found[1]))


def flow_run_processes(worker: subprocess.Popen, flow_run_id: UUID) -> list[psutil.Process]:
    """The worker's child processes that run `flow_run_id` (the engine sets its id)."""
    found = []
    for child in psutil.Process(worker.pid).children(recursive=True):
        try:
            if child.environ().get("PREFECT__FLOW_RUN_ID") == str(flow_run_id):
                found.append(child)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def wait_until(condition, seconds: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + seconds
    while not (value := condition()):
        assert time.monotonic() < deadline, f"after {seconds:.0f} s: {what}"
        time.sleep(interval)  # polls the condition; the hang guard is the deadline
    return value


def test_a_run_killed_in_training_resumes_by_itself_and_completes(tmp_path):
    # The worker looks for scheduled runs every 2 s instead of 10 s: a shorter test.
    with (
        prefect_server(tmp_path, PREFECT_WORKER_QUERY_SECONDS="2") as env,
        temporary_settings({PREFECT_API_URL: env["PREFECT_API_URL"]}),
    ):
        assert "Created automation 'gldv2-resume-crashed'" in deploy(env)
        # Deploying again updates what is there.
        assert "Updated automation 'gldv2-resume-crashed'" in deploy(env, gpu_limit="2")
        with get_client(sync_client=True) as client:
            assert len(client.read_automations_by_name("gldv2-resume-crashed")) == 1
            assert client.read_concurrency_limit_by_tag("gpu").concurrency_limit == 2
        with process_worker(env, tmp_path) as worker:
            heal_seconds = _kill_in_training_and_watch(env, worker, tmp_path)
    print(f"\nkill -> healed run Completed: {heal_seconds:.1f} s")


def deploy(env: dict[str, str], gpu_limit: str = "1") -> str:
    """Runs what `make deploy` runs; returns its output."""
    done = subprocess.run(
        ["bash", "deployments/deploy.sh", str(Path(PREFECT).parent), gpu_limit],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _kill_in_training_and_watch(env, worker, tmp_path: Path) -> float:
    output_root = tmp_path / "gldv2_mini"
    started = prefect(
        env,
        "deployment",
        "run",
        "gldv2/gldv2-mini",
        "--param",
        f"output_root={output_root}",
        "--param",
        "train=" + json.dumps(TRAIN),
        "--param",
        "evaluate=" + json.dumps({"check_model": False, "retrieval": False}),
    )
    flow_run_id = UUID(re.search(r"UUID: ([0-9a-f-]{36})", started.stdout)[1])
    watch = CheckpointWatch(output_root / "gldv2_training")
    watch.start()
    wait_until(lambda: watch.steps, UNTIL_CHECKPOINT, "training wrote no checkpoint")
    processes = wait_until(
        lambda: flow_run_processes(worker, flow_run_id), 60, "no process runs the flow run"
    )
    step_at_kill = watch.steps[-1]
    for process in processes:
        os.kill(process.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    assert step_at_kill < MAX_ITERS, "training ended before the kill: raise MAX_ITERS"

    with get_client(sync_client=True) as client:
        final = wait_until(
            lambda: (
                (run := client.read_flow_run(flow_run_id)).state.is_final()
                and not run.state.is_crashed()
                and run
            ),
            UNTIL_HEALED,
            "the killed run never ended other than Crashed",
            interval=0.5,
        )
        healed_seconds = time.monotonic() - killed_at
        watch.done.set()
        history = client.read_flow_run_states(flow_run_id)
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id]))
        )
    names = [state.name for state in history]
    assert final.state.is_completed(), f"{final.state}: {names}"
    assert "Crashed" in names and RESUME_STATE_NAME in names, names
    assert final.run_count == 2, names

    assert watch.steps == sorted(watch.steps), f"a checkpoint step went back: {watch.steps}"
    assert watch.steps[-1] == MAX_ITERS
    resumed = [
        int(m[1]) for log in logs if (m := re.search(r"resumed from step (\d+)", log.message))
    ]
    assert resumed and resumed[0] >= step_at_kill, (resumed, step_at_kill)

    trains = [run for run in task_runs(flow_run_id) if run.name == "train"]
    assert sorted(run.state.name for run in trains) == ["Completed", "Crashed"], trains
    assert not (output_root / LEASE_FILE).exists()
    return healed_seconds
