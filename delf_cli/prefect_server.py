"""Prefect's embedded server, for the `delf` commands that run flows or talk to the API.

With no `PREFECT_API_URL`, Prefect starts a temporary server of its own and waits
`PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS` (20 by default) for it. On a busy
2-core machine, with TensorFlow already imported, a start takes about as long, so the
commands here wait longer unless the user chose a limit, and a start that still fails
ends in one line that says what to do.
"""

from __future__ import annotations

import os

STARTUP_TIMEOUT_SETTING = "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS"
# Generous: a successful start returns as soon as the server answers.
DEFAULT_STARTUP_SECONDS = 300
# The start of Prefect's message when its temporary server does not answer in time.
_START_FAILED = "Timed out while attempting to connect to ephemeral Prefect API server"


def allow_slow_start(seconds: int = DEFAULT_STARTUP_SECONDS) -> None:
    """Gives Prefect's embedded server `seconds` to start, unless the user set a limit.

    A limit in the environment or in the active Prefect profile is kept. The value goes
    into the environment, so subprocesses (Dask workers, Beam workers) get it too.
    """
    if STARTUP_TIMEOUT_SETTING in os.environ:
        return
    import prefect.context

    profile = prefect.context.get_settings_context().profile
    if STARTUP_TIMEOUT_SETTING in profile.to_environment_variables():
        return
    os.environ[STARTUP_TIMEOUT_SETTING] = str(seconds)
    prefect.context.refresh_global_settings_context()


def start_failure(error: BaseException) -> str | None:
    """One line saying what to do when `error` is the embedded server failing to start."""
    if _START_FAILED not in str(error):
        return None
    limit = os.environ.get(STARTUP_TIMEOUT_SETTING, "20")
    return (
        f"Prefect's temporary server did not start within {limit} s. Start a server once "
        "with `make ui` (or `prefect server start`) and export "
        "PREFECT_API_URL=http://127.0.0.1:4200/api, or raise "
        f"{STARTUP_TIMEOUT_SETTING}."
    )
