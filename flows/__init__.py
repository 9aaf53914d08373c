"""Prefect flows and tasks over delf_core: retries, caching, progress in the UI."""

from flows.run_logs import send_step_logs_to_runs

# Every flow module is imported through this package: the library's log lines (training
# steps, records written, images extracted) reach the task run's log in the UI.
send_step_logs_to_runs()
