"""Closing an incident whose run ended without reaching its own summary: cancelled, crashed, abandoned.

A finished run closes its incident itself (`PlaybookRun.finish`). For the others:
- cancelled or crashed: Prefect runs the flow's `on_cancellation` / `on_crashed` hooks (in the runner
  process for served runs, where the run's own process is already gone): `close_on_hook`.
- SIGKILL of the whole runner (no hook runs): the next run of the same incident finds approvals left
  open by an earlier run and closes them first (`close_leftovers`, called at every run's start).

Either way: the live approval buttons are replaced by a "closed" line, the head message shows the
final state, a reply says what happened, and the timeline gets one `close` entry per run.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from waguard.playbook.timeline import IncidentTimeline
from waguard.settings import Settings, load_settings
from waguard.slack.blocks import ApprovalRequest, IncidentView
from waguard.slack.client import MessageRef, SlackClient
from waguard.state.backends import open_timelines

log = logging.getLogger(__name__)


def quick_incident_id(flow_name: str, run_id: Any) -> str:
    """A run started without an incident id (the UI's Quick run) is its own incident."""
    return f"quick-{flow_name}-{run_id}"


def closed_by(incident: IncidentTimeline, run_id: str) -> bool:
    return any(e.step == "close" and e.data.get("run") == run_id for e in incident.events())


async def slack_client(settings: Settings) -> SlackClient:
    from waguard.vault.client import VaultClient

    vault = VaultClient.from_settings(settings.vault)
    try:
        token = (await vault.read_secret(settings.slack.bot_token_path)).value
    finally:
        with contextlib.suppress(Exception):
            vault.close()
    return SlackClient.from_settings(settings.slack, token)


async def close_incident(settings: Settings, incident: IncidentTimeline, run_id: str, outcome: str,
                         message: str = "", slack: SlackClient | None = None) -> bool:
    """Close what run `run_id` left open on `incident`; False if it had closed already."""
    if closed_by(incident, run_id):
        return False
    state = incident.state()
    mine = [a for a in state.get("open_approvals", []) if a.get("run") == run_id]
    incident.append("close", "ended", outcome, actor="waguard",
                    data={"run": run_id, "message": message[:300]})
    incident.remember(open_approvals=[a for a in state.get("open_approvals", []) if a.get("run") != run_id])
    if "slack_ts" not in state:
        return True
    slack = slack or await slack_client(settings)
    head = MessageRef(channel=state["slack_channel"], ts=state["slack_ts"])
    for item in mine:
        with contextlib.suppress(Exception):  # a message deleted by hand must not stop the close
            request = ApprovalRequest.model_validate(item["request"])
            await slack.mark_decided(MessageRef(channel=item["channel"], ts=item["ts"]), request, "closed",
                                     f"run {outcome}")
    await slack.reply(head, f"*{outcome.upper()}*: run {run_id} ended ({message[:300] or outcome}). "
                            "This incident is closed; a new run is needed to continue.")
    if "slack_view" in state:
        view = IncidentView.model_validate(state["slack_view"]).model_copy(update={"state": outcome})
        await slack.update_incident(head, view)
    return True


async def close_leftovers(settings: Settings, incident: IncidentTimeline, this_run: str,
                          slack: SlackClient) -> list[str]:
    """Close earlier runs of this incident that left approvals open (their process died unhooked)."""
    from uuid import UUID

    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    earlier = {a.get("run") for a in incident.state().get("open_approvals", [])} - {this_run, None}
    async with get_client() as client:
        for run_id in list(earlier):
            try:
                run = await client.read_flow_run(UUID(str(run_id)))
            except ObjectNotFound:
                continue  # Prefect forgot it: it has ended
            if not (run.state and run.state.is_final()):
                earlier.discard(run_id)  # still running (a re-run beside it): its approvals stay live
    for run_id in sorted(earlier):
        await close_incident(settings, incident, str(run_id), "abandoned",
                             "its process stopped without closing; found by the next run", slack=slack)
    return sorted(str(r) for r in earlier)


async def close_on_hook(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect hook (on_cancellation, on_crashed): close the run's incident."""
    params = flow_run.parameters or {}
    if params.get("plan"):
        return
    outcome = "cancelled" if state.is_cancelling() or state.is_cancelled() else "crashed"
    try:
        settings = load_settings()
        incident_id = params.get("incident_id") or quick_incident_id(flow.name, flow_run.id)
        incident = open_timelines(settings).open(incident_id)
        await close_incident(settings, incident, str(flow_run.id), outcome, state.message or "")
    except Exception as err:  # noqa: BLE001 - a hook must not raise; the next run closes instead
        log.error("waguard: could not close the incident of run %s (%s)", flow_run.id, type(err).__name__)
