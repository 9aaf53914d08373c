"""What the Prefect API recorded of a flow run: its subflows, task runs and artifacts.

Every query filters by flow run on the server: an unfiltered read returns only the
first page (200 rows), which a long test session outgrows.

Prefect 3 records task runs and their states from events, which the server takes in
after the flow run has returned. So reads of task runs wait until the ones a test
expects are there and every recorded one has reached a final state.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Iterable
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
)


def flow_run_ids(flow_run_id: UUID) -> set[UUID]:
    """The flow run and its subflow runs, at any depth."""
    ids, frontier = {flow_run_id}, [flow_run_id]
    with get_client(sync_client=True) as client:
        while frontier:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
                )
            )
            frontier = [run.id for run in children if run.id not in ids]
            ids.update(frontier)
    return ids


# How long the server may take to record what a finished run's events say. Generous: a
# loaded 2-core machine delays the event pipeline, and a settled read returns at once.
SETTLE_SECONDS = 180.0


def task_runs(
    flow_run_id: UUID,
    since: datetime.datetime | None = None,
    subflows: bool = True,
    expect: Iterable[str] = (),
    timeout: float = SETTLE_SECONDS,
) -> list:
    """The task runs of a flow run (and its subflows), created after `since`, oldest first.

    Waits until a task run of each name in `expect` is recorded and every recorded one
    is in a final state. A subflow's stand-in task run (the parent's record of the
    call) is left out.

    Raises:
      AssertionError: naming what is missing or unfinished after `timeout` seconds.
    """
    expected = set(expect)
    deadline = time.monotonic() + timeout
    while True:
        runs = _recorded_task_runs(flow_run_id, since, subflows)
        missing = expected - {run.name for run in runs}
        pending = [run.name for run in runs if run.state is None or not run.state.is_final()]
        if not missing and not pending:
            return runs
        if time.monotonic() > deadline:
            raise AssertionError(
                f"flow run {flow_run_id}: after {timeout:.0f} s, task runs missing: "
                f"{sorted(missing)}, not final: {sorted(pending)}"
            )
        time.sleep(0.2)


def _recorded_task_runs(flow_run_id: UUID, since: datetime.datetime | None, subflows: bool) -> list:
    ids = flow_run_ids(flow_run_id) if subflows else {flow_run_id}
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids)))
        )
        stand_ins = {
            run.parent_task_run_id
            for run in client.read_flow_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=list(ids)))
            )
        }
    found = [
        run for run in runs if run.id not in stand_ins and (since is None or run.created >= since)
    ]
    return sorted(found, key=lambda run: run.created)


def task_states(flow_state, expect: Iterable[str] = (), subflows: bool = False) -> dict[str, str]:
    """Names and state names of the task runs of the flow run that ended in `flow_state`.

    Waits for the task runs named in `expect`, as `task_runs` does.
    """
    runs = task_runs(flow_state.state_details.flow_run_id, subflows=subflows, expect=expect)
    return {run.name: run.state.name for run in runs}


def artifacts(flow_run_id: UUID, subflows: bool = True) -> dict:
    """Key and data of the artifacts of a flow run (and its subflows)."""
    ids = flow_run_ids(flow_run_id) if subflows else {flow_run_id}
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(ids)))
        )
    return {artifact.key: artifact.data for artifact in found}
