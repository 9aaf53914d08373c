"""How fast the gldv2 flow gets going against a running Prefect server.

Two figures, each with a bound measured in the same run against the same server:

- `first_task_s`: from `delf gldv2` starting (a fresh process) to the flow's first task
  run existing on the server. Bound: a fresh process running a flow of one empty task.
- `cached_rerun_s`: a rerun of gldv2-mini whose steps are all cached, through the
  deployment and a process worker, from the run's creation to its end (server clocks).
  Bound: a deployment of an empty flow through the same worker (the worker's poll and
  its flow process start-up).

Runs the mini flow once first to fill the cache (its time is printed, not counted).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# The empty flow of the bounds, as a file a deployment can name.
EMPTY_FLOW = """
from prefect import flow, task


@task
def nothing():
    return None


@flow(name="empty")
def empty():
    nothing()


if __name__ == "__main__":
    empty()
"""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure (median)")
    parser.add_argument("--server_timeout", type=float, default=300, help="seconds to start")
    parser.add_argument("--run_timeout", type=float, default=1800, help="seconds per flow run")
    parser.add_argument("--workdir", default=None, help="where to make the run's folder")
    parser.add_argument("--keep", action="store_true", help="leave that folder in place")
    return parser.parse_args(argv)


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(api_url: str, server: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"prefect server exited with {server.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    sys.exit(f"prefect server not healthy within {seconds:.0f} s (--server_timeout)")


def check(command: list[str], env: dict, timeout: float) -> subprocess.CompletedProcess:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done


def first_task_seconds(command: list[str], env: dict, timeout: float) -> float:
    """Wall seconds from starting `command` to the first task run of its flow run."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import TaskRunSort

    began = time.time()
    check(command, env, timeout)
    with get_client(sync_client=True) as client:
        # Runs are one at a time: the newest task runs made since `began` are this run's.
        newest = client.read_task_runs(sort=TaskRunSort.EXPECTED_START_TIME_DESC, limit=200)
    created = [run.created.timestamp() for run in newest if run.created.timestamp() >= began]
    if not created:
        sys.exit(f"{' '.join(command)} made no task run")
    return min(created) - began


def deployment_run_seconds(name: str, parameters: dict, timeout: float) -> float:
    """Server seconds from a run of deployment `name` being made to its end; Completed or exit."""
    from prefect.deployments import run_deployment

    flow_run = run_deployment(name, parameters=parameters, timeout=timeout, poll_interval=1)
    if not flow_run.state.is_completed():
        sys.exit(f"{name} ended {flow_run.state.name}: {flow_run.state.message}")
    return (flow_run.end_time - flow_run.created).total_seconds()


def median(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    workdir = Path(tempfile.mkdtemp(prefix="bench-flow-start-", dir=args.workdir))
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(workdir / "prefect_home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL")})
    prefect = str(BIN / "prefect")
    server_log = (workdir / "server.log").open("w")
    server = subprocess.Popen(
        [prefect, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=server_log,
        stderr=subprocess.STDOUT,
    )
    worker = None
    try:
        wait_for_health(env["PREFECT_API_URL"], server, args.server_timeout)
        output_root = str(workdir / "gldv2_mini")
        delf = [str(BIN / "delf"), "gldv2", "--param", f"output_root={output_root}"]
        began = time.monotonic()
        first = first_task_seconds(delf, env, args.run_timeout)
        print(f"mini_first_run_s {time.monotonic() - began:.1f}  (fills the cache; not counted)")
        (workdir / "empty_flow.py").write_text(EMPTY_FLOW)
        empty = [sys.executable, str(workdir / "empty_flow.py")]
        firsts = [first] + [first_task_seconds(delf, env, args.run_timeout)
                            for _ in range(args.repeats - 1)]  # fmt: skip
        bounds = [first_task_seconds(empty, env, args.run_timeout) for _ in range(args.repeats)]
        print(f"first_task_s {median(firsts):.1f}  (runs: {', '.join(f'{s:.1f}' for s in firsts)})")
        print(f"bound_empty_flow_first_task_s {median(bounds):.1f}")
        print(f"first_task_ratio_to_bound {median(firsts) / median(bounds):.2f}")

        check([prefect, "work-pool", "create", "gldv2-process", "--type", "process"], env, 120)
        check([prefect, "--no-prompt", "deploy", "--all", "--prefect-file",
               "deployments/prefect.yaml"], env, 300)  # fmt: skip
        check([prefect, "--no-prompt", "deploy", f"{workdir / 'empty_flow.py'}:empty",
               "--name", "empty", "--pool", "gldv2-process"], env, 300)  # fmt: skip
        worker_log = (workdir / "worker.log").open("w")
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "gldv2-process", "--limit", "1"],
            cwd=ROOT,
            env=env,
            stdout=worker_log,
            stderr=subprocess.STDOUT,
        )
        params = {"output_root": output_root}
        reruns = [deployment_run_seconds("gldv2/gldv2-mini", params, args.run_timeout)
                  for _ in range(args.repeats)]  # fmt: skip
        floor = [deployment_run_seconds("empty/empty", {}, args.run_timeout)
                 for _ in range(args.repeats)]  # fmt: skip
        print(
            f"cached_rerun_s {median(reruns):.1f}  (runs: {', '.join(f'{s:.1f}' for s in reruns)})"
        )
        print(f"bound_empty_deployment_run_s {median(floor):.1f}")
        print(f"cached_rerun_ratio_to_bound {median(reruns) / median(floor):.2f}")
    finally:
        if worker is not None:
            worker.terminate()
            worker.wait(60)
        server.terminate()
        server.wait(60)
        server_log.close()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
