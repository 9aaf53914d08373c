"""One TF worker of a multi-worker training: `python -m delf_core.training.worker_main`.

The launcher (dask_training) starts it on each Dask worker with TF_CONFIG in its
environment and the run's TrainConfig as JSON on stdin. It trains as `delf train` does
(`train_recorded`), and writes what happens as event lines on stdout: the chief's
progress (its `on_steps` and `on_report` calls), then its result or its error. Log
lines go to stderr, which the launcher forwards from the chief.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
from typing import Any

from delf_core.training.config import TrainConfig

# Starts every event line, so that the launcher tells events from log lines.
EVENT_PREFIX = "@delf-train-event "
# Exit status of a worker that refuses its input (the same on every worker: not retried).
BAD_INPUT = 2


def emit(event: str, **fields: Any) -> None:
    """Writes one event line, flushed at once: the launcher follows them as they come."""
    sys.stdout.write(EVENT_PREFIX + json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def parse_event(line: str) -> dict | None:
    """The event of an event line, or None for any other line."""
    if not line.startswith(EVENT_PREFIX):
        return None
    return json.loads(line[len(EVENT_PREFIX) :])


def config_to_json(config: TrainConfig) -> str:
    return json.dumps(dataclasses.asdict(config))


def main() -> int:
    # The library's lines (steps, losses, rates); TensorFlow logs through its own handler.
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("delf_core")
    library.addHandler(handler)
    library.setLevel(logging.INFO)
    config = TrainConfig(**json.loads(sys.stdin.read()))
    # TensorFlow loads here, after TF_CONFIG is set: the strategy reads it once.
    from delf_core.training.loop import LabelOutOfRangeError
    from delf_core.training.run_record import train_recorded

    try:
        result = train_recorded(
            config,
            on_report=lambda step, max_iters, metrics: emit(
                "report", step=step, max_iters=max_iters, metrics=metrics
            ),
            on_steps=lambda step, max_iters: emit("steps", step=step, max_iters=max_iters),
        )
    except (ValueError, LabelOutOfRangeError) as error:
        emit("bad_input", message=str(error))
        return BAD_INPUT
    emit(
        "result",
        step=result.step,
        metrics=result.metrics,
        resumed_from=result.resumed_from,
        already_done=result.already_done,
        history=list(result.history),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
