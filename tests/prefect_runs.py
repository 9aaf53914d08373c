"""What the Prefect API recorded of a flow run: its subflows, task runs and artifacts.

Every query filters by flow run on the server: an unfiltered read returns only the
first page (200 rows), which a long test session outgrows.
"""

from __future__ import annotations

import datetime
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


def task_runs(
    flow_run_id: UUID, since: datetime.datetime | None = None, subflows: bool = True
) -> list:
    """The task runs of a flow run (and its subflows), created after `since`, oldest first.

    A subflow's stand-in task run (the parent's record of the call) is left out.
    """
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


def task_states(flow_state, subflows: bool = False) -> dict[str, str]:
    """Names and state names of the task runs of the flow run that ended in `flow_state`."""
    runs = task_runs(flow_state.state_details.flow_run_id, subflows=subflows)
    return {run.name: run.state.name for run in runs}


def artifacts(flow_run_id: UUID, subflows: bool = True) -> dict:
    """Key and data of the artifacts of a flow run (and its subflows)."""
    ids = flow_run_ids(flow_run_id) if subflows else {flow_run_id}
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=list(ids)))
        )
    return {artifact.key: artifact.data for artifact in found}
