"""Failed and crashed runs notify the Prefect notification block their parameter names."""

from __future__ import annotations

from prefect.blocks.abstract import NotificationBlock
from prefect.blocks.core import Block
from prefect.logging.loggers import flow_run_logger
from prefect.settings import get_current_settings

PARAMETER = "notify_block"


def load_notifier(block: str) -> NotificationBlock:
    """The notification block saved as `block` (`<type slug>/<name>`).

    Raises:
      ValueError: one line naming the block and what to do, when there is no such
        notification block.
    """
    hint = (
        "save one (UI: Blocks, e.g. a Custom Webhook) and name it as <type>/<name>, "
        "e.g. custom-webhook/gldv2-alerts"
    )
    try:
        loaded = Block.load(block)
    except (ValueError, KeyError) as error:
        raise ValueError(f"{PARAMETER} {block!r}: no such block ({error}); {hint}") from None
    if not isinstance(loaded, NotificationBlock):
        raise ValueError(
            f"{PARAMETER} {block!r} is a {type(loaded).__name__}, not a notification block; " + hint
        )
    return loaded


def notify_on_failure(flow, flow_run, state) -> None:
    """A flow's on_failure / on_crashed hook: sends the run's end to its `notify_block`."""
    block = (flow_run.parameters or {}).get(PARAMETER)
    if not block:
        return
    logger = flow_run_logger(flow_run, flow)
    subject = f"{flow.name} run {flow_run.name} ended {state.name}"
    body = f"{subject}: {state.message}"
    if ui := get_current_settings().ui_url:
        body += f"\n{ui}/runs/flow-run/{flow_run.id}"
    try:
        load_notifier(block).notify(body=body, subject=subject)
    except Exception:  # a notification that fails must not hide the run's own end
        logger.exception("could not notify %s", block)
    else:
        logger.info("notified %s: %s", block, subject)
