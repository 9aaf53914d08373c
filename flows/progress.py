"""A step's progress in the Prefect UI: one progress artifact per step and flow run, kept current.

The artifact `gldv2-<step>-progress` is made at the first report and then updated in
place. A retried task run (or a retried flow run) finds the one its earlier attempt
made in the same flow run and goes on updating it, so the UI shows one bar per step.
The same line goes to the log (delf_core's logger reaches the run's log, see run_logs).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from uuid import UUID

from prefect.artifacts import ProgressArtifact, update_progress_artifact
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    ArtifactFilterKey,
    ArtifactFilterTaskRunId,
)
from prefect.client.schemas.sorting import ArtifactSort
from prefect.utilities.context import get_task_and_flow_run_ids

from delf_core.progress import ProgressCadence, ProgressSnapshot, ProgressTracker, log_progress
from flows.summary import artifact_key

log = logging.getLogger(__name__)


def progress_key(step: str) -> str:
    """`gldv2-build-image-dataset-progress`: artifact keys allow only [a-z0-9-]."""
    return artifact_key(step, "progress")


class RunProgress:
    """Follows `total` units of `step` and shows them in the run's artifact and log.

    Thread-safe: a download's worker threads or a job's poller may report at once.
    Made inside a flow or task run (or given its `run_ids`, (task run, flow run)); it
    may then be updated from any thread.
    """

    def __init__(
        self,
        step: str,
        total: float | None,
        unit: str,
        *,
        done: float = 0.0,
        cadence: ProgressCadence | None = None,
        key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        run_ids: tuple[UUID | None, UUID | None] | None = None,
    ) -> None:
        self.step = step
        self.key = key or progress_key(step)
        self.tracker = ProgressTracker(
            total, unit, done=done, cadence=cadence or ProgressCadence(), clock=clock
        )
        self._lock = threading.Lock()
        # Kept now: a thread the caller starts later has no run context of its own.
        self._task_run_id, self._flow_run_id = run_ids or get_task_and_flow_run_ids()
        self._artifact_id: UUID | None = None
        # Shown after the counts, e.g. the last loss of a training run.
        self.note = ""

    def set_total(self, total: float | None) -> None:
        with self._lock:
            self.tracker.set_total(total)

    def update(self, done: float) -> None:
        """Records `done` units; shows them when the cadence says a report is due."""
        with self._lock:
            due = self.tracker.update(done)
            snapshot = self.tracker.snapshot()
        if due:
            self.show(snapshot)

    def advance(self, count: float) -> None:
        with self._lock:
            due = self.tracker.advance(count)
            snapshot = self.tracker.snapshot()
        if due:
            self.show(snapshot)

    def finish(self) -> None:
        """Shows the last count, whether or not a report is due."""
        with self._lock:
            snapshot = self.tracker.snapshot()
        self.show(snapshot)

    def show(self, snapshot: ProgressSnapshot) -> None:
        description = snapshot.describe() + (f"; {self.note}" if self.note else "")
        log_progress(self.step, description)
        if self._flow_run_id is None and self._task_run_id is None:
            return  # a step run by hand: the terminal shows it, there is no run to attach to
        percent = 100.0 * (snapshot.fraction or 0.0)
        try:
            with self._lock:
                if self._artifact_id is None:
                    self._artifact_id = self._earlier_artifact()
                if self._artifact_id is None:
                    self._artifact_id = self._create(percent, description)
                else:
                    update_progress_artifact(self._artifact_id, percent, description)
        except Exception:  # progress is for show: a server hiccup must not stop the step
            log.warning("%s: could not update the progress artifact", self.step, exc_info=True)

    def _earlier_artifact(self) -> UUID | None:
        """The artifact an earlier attempt of this run made under this key, if any."""
        if self._flow_run_id is not None:
            run = ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[self._flow_run_id]))
        else:
            run = ArtifactFilter(task_run_id=ArtifactFilterTaskRunId(any_=[self._task_run_id]))
        run.key = ArtifactFilterKey(any_=[self.key])
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=run, sort=ArtifactSort.CREATED_DESC, limit=1
            )
        return found[0].id if found else None

    def _create(self, percent: float, description: str) -> UUID:
        artifact = ProgressArtifact(
            key=self.key,
            description=description,
            progress=percent,
            flow_run_id=self._flow_run_id,
            task_run_id=self._task_run_id,
        )
        return artifact.create().id


def step_progress(step: str, unit: str) -> Callable[[float, float | None], None]:
    """A `(done, total)` callback that shows `step` as a RunProgress made at its first call.

    Made inside the run; it may be called from a thread of the library's own.
    """
    holder: list[RunProgress] = []
    context_ids = get_task_and_flow_run_ids()

    def report(done: float, total: float | None) -> None:
        if not holder:
            holder.append(RunProgress(step, total, unit, done=done, run_ids=context_ids))
            holder[0].finish()
            return
        holder[0].set_total(total)
        holder[0].update(done)

    return report
