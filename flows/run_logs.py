"""The log lines of delf_core and beam_jobs reach the run's log in the Prefect UI.

A step's progress and problems are logged by the library (training steps and losses,
records written, images extracted), with plain Python loggers. Prefect sends only its
own run loggers to the API; here the library's loggers get a handler that sends each
line logged inside a flow or task run to that run's log. Lines logged elsewhere (a Beam
worker thread, a command run by hand) go to the terminal only, as before.
"""

from __future__ import annotations

import logging

from prefect.context import get_run_context
from prefect.exceptions import MissingContextError
from prefect.logging.handlers import APILogHandler

# The packages whose loggers a step's progress goes through.
STEP_LOGGERS = ("delf_core", "beam_jobs")


class RunLogHandler(APILogHandler):
    """Prefect's API handler, for lines logged inside a run; others are left alone."""

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(record, "flow_run_id", None) is None:
            try:
                get_run_context()
            except MissingContextError:
                return
        super().emit(record)


def send_step_logs_to_runs(level: int = logging.INFO) -> None:
    """Attaches a RunLogHandler to the step loggers (once), logging from `level` up."""
    for name in STEP_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, RunLogHandler) for handler in logger.handlers):
            logger.addHandler(RunLogHandler())
        if logger.level == logging.NOTSET or logger.level > level:
            logger.setLevel(level)
