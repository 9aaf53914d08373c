"""The run summary: one table of the pipeline's steps, published as the run ends.

A row per step: its state, whether it ran or came from cache, its duration, its key
figures and its output. Whether a step ran is read from its tasks' final states (Cached:
the body did not run), recorded by a task hook as each task ends, in this process.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import threading
import time
from collections.abc import Iterator, Mapping

from flows.summary import format_duration, publish_summary

RUN_STEP = "run"


@dataclasses.dataclass
class StepRow:
    """One step of the run, filled in as it goes."""

    step: str
    output: str = ""
    figures: str = ""
    state: str = "Running"
    seconds: float = 0.0
    ran: int = 0
    cached: int = 0
    failed: int = 0
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    def note(self, state_name: str) -> None:
        """Counts one of the step's tasks by how it ended."""
        with self._lock:
            if state_name == "Cached":
                self.cached += 1
            elif state_name == "Completed":
                self.ran += 1
            else:
                self.failed += 1

    def how(self) -> str:
        """`ran`, `cached`, or `ran 3, cached 11` when the step's tasks differ."""
        if self.ran and self.cached:
            return f"ran {self.ran}, cached {self.cached}"
        if self.cached:
            return "cached"
        return "ran" if self.ran or self.failed else "-"

    def as_row(self) -> dict[str, str]:
        return {
            "step": self.step,
            "state": self.state,
            "ran or cached": self.how(),
            "duration": format_duration(self.seconds),
            "figures": self.figures,
            "output": f"`{self.output}`" if self.output else "",
        }


# The step the flow is in; task threads and subflows see it through their copied context.
_CURRENT: contextvars.ContextVar[StepRow | None] = contextvars.ContextVar(
    "gldv2_step", default=None
)


def note_task_end(task, task_run, state) -> None:
    """A task hook (on_completion, on_failure): counts the task under the step running now.

    Tasks run outside a pipeline run, or on other processes (Dask), count nowhere; their
    step sets its counts itself.
    """
    row = _CURRENT.get()
    if row is not None:
        row.note(state.name)


# For the `@task(...)` of each step: its runs count in the run summary.
COUNTED = dict(on_completion=[note_task_end], on_failure=[note_task_end])


class _HookBookkeeping(logging.Filter):
    """Drops Prefect's two INFO lines per task about running `note_task_end`.

    They would fill every task run's log and the terminal with the summary's
    bookkeeping; a hook that fails still logs its ERROR.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or note_task_end.__name__ not in record.getMessage()


logging.getLogger("prefect.task_runs").addFilter(_HookBookkeeping())


class RunSummary:
    """The rows of a pipeline run, in the order its steps ran."""

    def __init__(self) -> None:
        self.rows: list[StepRow] = []

    @contextlib.contextmanager
    def step(self, name: str, output: str = "") -> Iterator[StepRow]:
        """Times the step and counts its tasks; a failure marks it Failed and goes on up."""
        row = StepRow(name, output=output)
        self.rows.append(row)
        token = _CURRENT.set(row)
        began = time.monotonic()
        try:
            yield row
            row.state = "Completed"
        except BaseException:
            row.state = "Failed"
            raise
        finally:
            row.seconds = time.monotonic() - began
            _CURRENT.reset(token)

    def skipped(self, name: str, reason: str) -> None:
        self.rows.append(StepRow(name, figures=reason, state="Skipped"))

    def publish(self, outputs: Mapping[str, str], started: float) -> None:
        """The `gldv2-run` artifact: the run's duration, the steps' table, every output."""
        publish_summary(
            RUN_STEP,
            {},
            started=started,
            table=[row.as_row() for row in self.rows],
            notes=[f"{name}: `{path}`" for name, path in outputs.items()],
        )
