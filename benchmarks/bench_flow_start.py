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
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the server and worker helpers the e2e tests use

from tests.server_process import prefect, prefect_server, process_worker  # noqa: E402

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
    return parser.parse_args(argv)


def check(command: list[str], env: dict, timeout: float) -> None:
    done = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


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


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-flow-start-", dir=args.workdir) as tmp:
        workdir = Path(tmp)
        quiet = {"PREFECT_LOGGING_LEVEL": "WARNING", "DO_NOT_TRACK": "1",
                 "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}  # fmt: skip
        with prefect_server(workdir, args.server_timeout, **quiet) as env:
            os.environ.update({k: env[k] for k in ("PREFECT_HOME", "PREFECT_API_URL")})
            measure(args, env, workdir)


def measure(args: argparse.Namespace, env: dict, workdir: Path) -> None:
    output_root = str(workdir / "gldv2_mini")
    delf = [str(BIN / "delf"), "gldv2", "--param", f"output_root={output_root}"]
    began = time.monotonic()
    firsts = [first_task_seconds(delf, env, args.run_timeout)]
    print(f"mini_first_run_s {time.monotonic() - began:.1f}  (fills the cache; not counted)")
    firsts += [first_task_seconds(delf, env, args.run_timeout) for _ in range(args.repeats - 1)]
    (workdir / "empty_flow.py").write_text(EMPTY_FLOW)
    empty = [sys.executable, str(workdir / "empty_flow.py")]
    bounds = [first_task_seconds(empty, env, args.run_timeout) for _ in range(args.repeats)]
    report("first_task", firsts, "bound_empty_flow_first_task_s", bounds)

    prefect(env, "work-pool", "create", "gldv2-process", "--type", "process")
    prefect(env, "deploy", "--all", "--prefect-file", "deployments/prefect.yaml")
    prefect(env, "deploy", f"{workdir / 'empty_flow.py'}:empty", "--name", "empty",
            "--pool", "gldv2-process")  # fmt: skip
    with process_worker(env, workdir):
        params = {"output_root": output_root}
        reruns = [deployment_run_seconds("gldv2/gldv2-mini", params, args.run_timeout)
                  for _ in range(args.repeats)]  # fmt: skip
        floor = [deployment_run_seconds("empty/empty", {}, args.run_timeout)
                 for _ in range(args.repeats)]  # fmt: skip
    report("cached_rerun", reruns, "bound_empty_deployment_run_s", floor)


def report(name: str, runs: list[float], bound_name: str, bounds: list[float]) -> None:
    """The median of `runs`, each run, the bound's median and the ratio to it."""
    figure, bound = statistics.median(runs), statistics.median(bounds)
    print(f"{name}_s {figure:.1f}  (runs: {', '.join(f'{s:.1f}' for s in runs)})")
    print(f"{bound_name} {bound:.1f}")
    print(f"{name}_ratio_to_bound {figure / bound:.2f}")


if __name__ == "__main__":
    main()
