"""What runs on each Dask worker of a multi-worker training: a port, then one TF worker.

Each TF worker is a fresh process (`python -m delf_core.training.worker_main`), not the
Dask worker itself: TensorFlow reads TF_CONFIG and sets up its collectives once per
process, so a Dask worker that ran an earlier training (or imported TensorFlow for any
other task) could not join a new cluster; a TF worker stuck in a collective or killed
by the kernel is ended or lost without taking the Dask worker down; and a stop is a kill
of a child process, which a thread running inside the Dask worker could not undergo.
Imports no TensorFlow: the Dask worker stays free of it.
"""

from __future__ import annotations

import collections
import contextlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from urllib.parse import urlsplit

from delf_core.training.worker_main import parse_event

# Lines of a TF worker's output kept to explain its failure.
TAIL_LINES = 30
# The launcher's stop is looked at this often (seconds) while the TF worker runs.
STOP_POLL_S = 1.0


def free_endpoint() -> str:
    """`host:port` for this Dask worker's TF worker: its host, a port free right now.

    The port is released before TensorFlow binds it; should another process take it
    meanwhile, the TF worker fails to start and the task's retry picks new ports.
    """
    from distributed import get_worker

    host = urlsplit(get_worker().address).hostname
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def run_tf_worker(spec: dict) -> dict:
    """Runs one TF worker to its end, or until the launcher says stop; returns how it ended.

    Args:
      spec: index (the TF task index; 0 is the chief), tf_config (JSON), config (the
        TrainConfig as JSON), topic (where the chief's events and log lines go), stop
        (the name of the run's distributed Event) and command (argv of the TF worker;
        none: this Python's `-m delf_core.training.worker_main`).

    Returns:
      index, returncode, stopped (killed on the launcher's word), result and bad_input
      (the worker's last events of those kinds), events (how many were sent on `topic`)
      and tail (the last lines of its output).
    """
    from distributed import Event, get_worker

    worker = get_worker()
    key = worker.get_current_task()
    stop = Event(spec["stop"])
    is_chief = spec["index"] == 0
    # Its temporary files (the checkpoints of a worker that is not the chief) go here,
    # removed however it ends.
    scratch = tempfile.mkdtemp(prefix=f"delf-tf-worker-{spec['index']}-")
    env = {
        **os.environ,
        "TF_CONFIG": spec["tf_config"],
        "TMPDIR": scratch,
        "PYTHONUNBUFFERED": "1",
        # TensorFlow's C++ INFO lines (CPU features, no CUDA) flood the chief's log.
        "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "1"),
    }
    command = spec.get("command") or [sys.executable, "-m", "delf_core.training.worker_main"]
    outcome = {
        "index": spec["index"],
        "stopped": False,
        "result": None,
        "bad_input": None,
        "events": 0,
    }
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)

    def follow(stream) -> None:
        for raw in stream:
            line = raw.rstrip("\n")
            event = parse_event(line)
            if event is None:
                tail.append(line)
                if is_chief and line.strip():
                    worker.log_event(spec["topic"], {"event": "log", "line": line})
                    outcome["events"] += 1
                continue
            if event["event"] in ("result", "bad_input"):
                outcome[event["event"]] = event
            elif is_chief:
                worker.log_event(spec["topic"], event)
                outcome["events"] += 1

    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            text=True,
        )
        reader = threading.Thread(target=follow, args=(process.stdout,), daemon=True)
        reader.start()
        with contextlib.suppress(BrokenPipeError):  # it died at once: its status tells
            process.stdin.write(spec["config"])
            process.stdin.close()
        while process.poll() is None:
            if stop.wait(timeout=STOP_POLL_S) or not _still_wanted(worker, key):
                outcome["stopped"] = process.poll() is None
                process.kill()
                break
        outcome["returncode"] = process.wait()
        reader.join()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome["tail"] = list(tail)
    return outcome


def _still_wanted(worker, key) -> bool:
    """False once the launcher's client let go of this task (it ended or went away)."""
    task = worker.state.tasks.get(key)
    return task is not None and task.state not in ("cancelled", "released", "forgotten")
