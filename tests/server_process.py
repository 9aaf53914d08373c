"""A real `prefect server start` on 127.0.0.1, a process worker, and `prefect` against them.

Plain Python (no pytest), so that the benchmarks use them too.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFECT = str(Path(sys.executable).with_name("prefect"))
# Generous: a start returns as soon as the server answers.
SERVER_START_SECONDS = 300


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_health(api_url: str, process: subprocess.Popen, seconds: float) -> None:
    """Returns once the server answers `/health`; raises one line if it exits or is late."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"prefect server exited with {process.returncode}")
        try:
            with urllib.request.urlopen(f"{api_url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"prefect server not healthy within {seconds:.0f} s")


@contextlib.contextmanager
def prefect_server(
    tmp_path: Path, start_seconds: float = SERVER_START_SECONDS, **env_updates: str
) -> Iterator[dict[str, str]]:
    """`prefect server start` with its own home under `tmp_path`; yields the client env."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(tmp_path / "prefect_home"),
        "PREFECT_API_URL": f"http://127.0.0.1:{port}/api",
        "PREFECT_LOGGING_LEVEL": "INFO",
        **env_updates,
    }
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for_health(env["PREFECT_API_URL"], server, start_seconds)
        yield env
    finally:
        server.terminate()
        server.wait(30)
        log.close()


def prefect(env, *args, timeout=600) -> subprocess.CompletedProcess:
    """Runs `prefect --no-prompt ARGS` in the repository; asserts it succeeded."""
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


@contextlib.contextmanager
def process_worker(
    env: dict[str, str], tmp_path: Path, pool: str = "gldv2-process"
) -> Iterator[subprocess.Popen]:
    """A process worker of `pool` running one flow run at a time."""
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [PREFECT, "worker", "start", "--pool", pool, "--limit", "1"],
        cwd=tmp_path,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()
