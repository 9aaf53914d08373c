"""The gldv2 flow's guard rails: the output_root lease, notifications, the resume limit."""

from __future__ import annotations

import http.server
import json
import queue
import threading
from uuid import uuid4

import pytest
from prefect import flow, task
from prefect.blocks.notifications import CustomWebhookNotificationBlock
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.states import Crashed, Pending, Running, Scheduled

from delf_core.output_lease import OutputLease
from flows.gldv2 import gldv2
from flows.healing import RESUME_STATE_NAME, crash_resumes

# More train tars than the mini mirror has: the run fails after its start-up checks,
# before it writes anything.
TOO_MANY_TARS = {"num_train": 3, "num_index": 1, "num_test": 1, "mini_mirror": True}
MINI = {"num_train": 1, "num_index": 0, "num_test": 0, "mini_mirror": True}


def test_a_second_run_on_a_held_output_root_fails_at_once_naming_the_holder(
    prefect_harness, tmp_path
):
    root = tmp_path / "run"
    with OutputLease(str(root), str(uuid4()), "brave-fox"):
        state = gldv2(output_root=str(root), download=MINI, train=None, return_state=True)
    assert state.is_failed()
    line = state.message.splitlines()[-1]
    assert f"output_root {root} is in use by run 'brave-fox'" in line, state.message
    assert sorted(p.name for p in root.iterdir()) == []  # nothing downloaded


class _Webhook(http.server.BaseHTTPRequestHandler):
    received: queue.Queue = queue.Queue()

    def do_POST(self) -> None:  # noqa: N802 (the http.server name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.received.put(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture()
def webhook():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Webhook)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Webhook.received
    server.shutdown()
    server.server_close()


def test_a_failed_run_notifies_its_notification_block(prefect_harness, tmp_path, webhook):
    url, received = webhook
    CustomWebhookNotificationBlock(
        name="gldv2-alerts", url=url, json_data={"subject": "{{subject}}", "text": "{{body}}"}
    ).save("gldv2-test-alerts", overwrite=True)
    state = gldv2(
        output_root=str(tmp_path / "run"),
        download=TOO_MANY_TARS,
        notify_block="custom-webhook/gldv2-test-alerts",
        return_state=True,
    )
    assert state.is_failed()
    message = received.get(timeout=60)
    assert message["subject"].startswith("gldv2 run ") and message["subject"].endswith("Failed")
    assert "the mini mirror has" in message["text"]


def test_a_missing_notification_block_fails_the_run_at_its_start(prefect_harness, tmp_path):
    state = gldv2(
        output_root=str(tmp_path / "run"),
        download=MINI,
        notify_block="custom-webhook/no-such-block",
        return_state=True,
    )
    assert state.is_failed()
    assert "notify_block 'custom-webhook/no-such-block': no such block" in state.message
    assert not (tmp_path / "run").exists()


def test_resumes_are_counted_in_a_row_and_a_person_s_retry_starts_again():
    history = [Scheduled(), Pending(), Running(), Crashed()]
    history += [Scheduled(name=RESUME_STATE_NAME), Pending(), Running()]
    assert crash_resumes(history) == 1
    retried = Scheduled(name="AwaitingRetry")
    assert crash_resumes([*history, Crashed(), Scheduled(name=RESUME_STATE_NAME)]) == 2
    assert crash_resumes([*history, Crashed(), retried, Pending(), Running()]) == 0


def _deployment_run(parameters: dict, resumes: int):
    """A flow run of a gldv2 deployment that crashed and was resumed `resumes` times."""
    with get_client(sync_client=True) as client:
        flow_id = client.create_flow_from_name("gldv2")
        deployment_id = client.create_deployment(flow_id=flow_id, name=f"test-{uuid4().hex[:8]}")
        run = client.create_flow_run_from_deployment(deployment_id, parameters=parameters)
        for _ in range(resumes):
            for state in (Pending(), Running(), Crashed(), Scheduled(name=RESUME_STATE_NAME)):
                client.set_flow_run_state(run.id, state, force=True)
        return client.read_flow_run(run.id)


def test_a_run_resumed_more_than_max_crash_resumes_fails_saying_so(prefect_harness, tmp_path):
    parameters = {"output_root": str(tmp_path / "run"), "train": None, "max_crash_resumes": 2}
    run = _deployment_run(parameters, resumes=3)
    state = run_flow(gldv2, flow_run=run, parameters=parameters, return_type="state")
    assert state.is_failed()
    assert (
        f"flow run {run.name!r} crashed 3 times in a row, more than max_crash_resumes=2"
        in state.message
    )
    assert not (tmp_path / "run").exists()


@task(name="train")
def _train() -> None:
    """Stands for the training its flow run's killed process left Running."""


@flow(name="build_image_dataset")
def _build() -> None:
    """Stands for a subflow the killed process left Running."""


def test_a_resumed_run_closes_what_its_dead_attempt_left_running(prefect_harness, tmp_path):
    parameters = {"output_root": str(tmp_path / "run"), "download": TOO_MANY_TARS}
    run = _deployment_run(parameters, resumes=1)
    with get_client(sync_client=True) as client:
        stale = client.create_task_run(_train, run.id, dynamic_key="0", state=Running())
        stand_in = client.create_task_run(_train, run.id, dynamic_key="1", state=Running())
        subflow = client.create_flow_run(_build, parent_task_run_id=stand_in.id, state=Running())
        stale_child = client.create_task_run(_train, subflow.id, dynamic_key="0", state=Running())
    state = run_flow(gldv2, flow_run=run, parameters=parameters, return_type="state")
    assert state.is_failed() and "the mini mirror has" in state.message  # got past the checks
    with get_client(sync_client=True) as client:
        closed = [client.read_task_run(t.id).state for t in (stale, stand_in, stale_child)]
        closed.append(client.read_flow_run(subflow.id).state)
    assert all(s.is_crashed() and "was resumed" in s.message for s in closed), closed
