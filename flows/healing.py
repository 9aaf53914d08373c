"""A crashed run resumed by the server: its resume count, and what its dead process left open.

The automation `gldv2-resume-crashed` (deployments/automations.yaml) puts a deployment's
flow run that crashed back to Scheduled under the name `Resuming`; the worker runs the
same flow run again, finished steps come from the cache and training from its last
checkpoint. This module is what that run does first.
"""

from __future__ import annotations

from collections.abc import Iterable
from uuid import UUID

from prefect import get_run_logger
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterId,
    FlowRunFilterParentFlowRunId,
    FlowRunFilterState,
    FlowRunFilterStateType,
    TaskRunFilter,
    TaskRunFilterState,
    TaskRunFilterStateType,
)
from prefect.client.schemas.objects import State, StateType
from prefect.context import get_run_context
from prefect.states import Crashed

# The state name the automation gives; deployments/automations.yaml must say the same.
RESUME_STATE_NAME = "Resuming"
_OPEN = [
    StateType.SCHEDULED,
    StateType.PENDING,
    StateType.RUNNING,
    StateType.PAUSED,
    StateType.CANCELLING,
]


class TooManyCrashesError(RuntimeError):
    """The run crashed more times in a row than it may be resumed."""


def crash_resumes(states: Iterable[State]) -> int:
    """How many times in a row the run was resumed after a crash, from its state history.

    A schedule or a person's retry (any other Scheduled state) starts the count again.
    """
    count = 0
    for state in sorted(states, key=lambda s: s.timestamp):
        if state.type == StateType.SCHEDULED:
            count = count + 1 if state.name == RESUME_STATE_NAME else 0
    return count


def resume_after_crash(max_crash_resumes: int) -> None:
    """At a flow run's start: refuses a run resumed too often, closes the dead attempt's runs.

    Raises:
      TooManyCrashesError: one line naming the run and the limit; the run then ends
        Failed, which the automation leaves alone.
    """
    run = get_run_context().flow_run
    with get_client(sync_client=True) as client:
        resumes = crash_resumes(client.read_flow_run_states(run.id))
    if resumes > max_crash_resumes:
        raise TooManyCrashesError(
            f"flow run {run.name!r} crashed {resumes} times in a row, more than "
            f"max_crash_resumes={max_crash_resumes}: not resumed again; find the cause in "
            "its logs (out of memory?) and retry it by hand"
        )
    if run.run_count > 1:
        closed = close_stale_runs(run.id)
        if closed:
            get_run_logger().info("closed what the last attempt left open: %s", closed)


def close_stale_runs(flow_run_id: UUID) -> list[str]:
    """Marks Crashed the task runs and subflow runs an earlier attempt left open.

    Called before the run starts any task, so every open one belongs to a process that
    is gone. Returns their names.
    """
    crashed = Crashed(message="its process was lost; the flow run was resumed")
    closed: list[str] = []
    with get_client(sync_client=True) as client:
        ids, frontier = [flow_run_id], [flow_run_id]
        while frontier:
            children = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=frontier)
                )
            )
            frontier = [child.id for child in children if child.id not in ids]
            ids += frontier
        if subflow_ids := ids[1:]:
            open_subflows = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(
                    id=FlowRunFilterId(any_=subflow_ids),
                    state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_OPEN)),
                )
            )
            for subflow in open_subflows:
                client.set_flow_run_state(subflow.id, crashed, force=True)
                closed.append(subflow.name)
        open_tasks = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids)),
            task_run_filter=TaskRunFilter(
                state=TaskRunFilterState(type=TaskRunFilterStateType(any_=_OPEN))
            ),
        )
        for task_run in open_tasks:
            client.set_task_run_state(task_run.id, crashed, force=True)
            closed.append(task_run.name)
    return closed
