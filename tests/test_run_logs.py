"""The library's log lines reach the task run's log in the Prefect UI, and the terminal."""

from __future__ import annotations

import logging
import time

from prefect import flow, task
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

import flows  # noqa: F401  (the flows package attaches the handler)
import flows.run_summary  # noqa: F401  (installs the filter)
from flows.run_logs import RunLogHandler
from tests.prefect_runs import SETTLE_SECONDS, task_runs

# A logger under delf_core's name, as every module of the library has.
STEP_LOG = logging.getLogger("delf_core.training.loop")


@task(task_run_name="logging_step")
def logging_step() -> None:
    STEP_LOG.info("step 5/10, loss 1.2345")
    STEP_LOG.debug("a detail below INFO")


@flow
def run_one_step() -> None:
    logging_step()


def _task_log_messages(task_run_id, expected: str = "step 5/10") -> list[str]:
    """The task run's log lines on the server, once the one the test expects is there."""
    deadline = time.monotonic() + SETTLE_SECONDS
    with get_client(sync_client=True) as client:
        while True:
            logs = client.read_logs(
                log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=[task_run_id]))
            )
            messages = [log.message for log in logs]
            if any(expected in m for m in messages) or time.monotonic() > deadline:
                return messages
            time.sleep(0.5)  # polls the condition; the hang guard is the deadline


def test_a_library_log_line_shows_in_the_task_runs_log(prefect_harness, caplog):
    caplog.set_level(logging.INFO)
    state = run_one_step(return_state=True)

    assert state.is_completed()
    (run,) = task_runs(state.state_details.flow_run_id, expect=["logging_step"])
    messages = _task_log_messages(run.id)
    assert "step 5/10, loss 1.2345" in messages
    assert not any("a detail below INFO" in m for m in messages)
    # Still on the terminal (the root logger's handlers), once.
    assert [r.message for r in caplog.records].count("step 5/10, loss 1.2345") == 1


def test_a_line_logged_outside_a_run_is_not_sent_and_warns_nothing(recwarn):
    STEP_LOG.info("outside any run")
    handlers = [h for h in logging.getLogger("delf_core").handlers if isinstance(h, RunLogHandler)]
    assert len(handlers) == 1
    assert not [w for w in recwarn if "flow run id" in str(w.message)]


def test_the_run_summarys_task_hook_adds_no_info_line_to_the_task_runs_log():
    task_runs_logger = logging.getLogger("prefect.task_runs")

    def passes(level: int, message: str) -> bool:
        record = task_runs_logger.makeRecord("prefect.task_runs", level, "", 0, message, (), None)
        return task_runs_logger.filter(record)

    assert not passes(
        logging.INFO, "Running hook 'note_task_end' in response to entering state 'Cached'"
    )
    assert not passes(logging.INFO, "Hook 'note_task_end' finished running successfully")
    assert passes(logging.ERROR, "An error was encountered while running hook 'note_task_end'")
    assert passes(logging.INFO, "Finished in state Completed()")
