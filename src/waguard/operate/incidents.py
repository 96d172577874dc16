"""`waguard incident list | show ID | cancel ID`: incidents from a terminal, without the Prefect CLI.

An incident is its timeline (`waguard.playbook.timeline`, in the store `state.dsn` chooses) plus the
Prefect runs working on it (flow-run parameter `incident_id`). Cancelling closes it everywhere, as a
cancelled run does: each live run is set Cancelling through the Prefect API and waited for until it is
Cancelled and its close entry is on the timeline (the flow's hook replaces the Slack buttons); a run
that nobody executes any more is forced Cancelled and closed here with the same function the hook
uses (`waguard.playbook.closing.close_incident`).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any
from uuid import UUID

from waguard.errors import WaguardError
from waguard.playbook.closing import close_incident, closed_by
from waguard.playbook.names import FLOW_NAMES
from waguard.playbook.timeline import INCIDENT_ID, IncidentTimeline, TimelineEvent
from waguard.settings import Settings
from waguard.state.backends import open_timelines

RUN_IN_OPEN = re.compile(r"\brun ([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\b")
CANCEL_MESSAGE = "cancelled by a responder (waguard incident cancel)"


class IncidentNotFound(WaguardError):
    """No incident with that id in the timeline store."""


class CancelTimedOut(WaguardError):
    """A run did not reach Cancelled, or its close entry did not appear, in time."""


@dataclass
class Summary:
    """One incident as `list` and `show` print it."""

    incident_id: str
    playbook: str
    waba_id: str
    status: str  # open | closed: <outcome>
    started_at: str
    last_at: str
    runs: list[str] = field(default_factory=list)
    live_runs: dict[str, str] = field(default_factory=dict)  # run id -> Prefect state


def _names(settings: Settings) -> list[str]:
    return [name for name in open_timelines(settings).ids() if not name.endswith(".plan")]


def _incident_id(name: str, state: dict[str, Any]) -> str:
    """The id as runs know it (a file store's name has ':' as '_'; the Slack view keeps the real id)."""
    return str((state.get("slack_view") or {}).get("incident_id") or name)


def record_of(settings: Settings, incident_id: str) -> IncidentTimeline:
    """The incident's record; never creates one for an id that has none."""
    if not INCIDENT_ID.match(incident_id):
        raise IncidentNotFound(f"{incident_id!r} is not an incident id (3-128 of letters, digits, . _ : -)")
    record = open_timelines(settings).open(incident_id)
    if not record.exists():
        raise IncidentNotFound(f"no incident {incident_id} (waguard incident list shows them)")
    return record


def runs_of(events: Sequence[TimelineEvent], state: dict[str, Any]) -> list[str]:
    """Every run that worked on the incident, in order of its first appearance (pure)."""
    runs: list[str] = []
    for e in events:
        found = RUN_IN_OPEN.search(e.detail) if e.step == "open" else None
        for run in (found.group(1) if found else None, e.data.get("run")):
            if run and run not in runs:
                runs.append(str(run))
    for approval in state.get("open_approvals", []):
        if approval.get("run") and approval["run"] not in runs:
            runs.append(str(approval["run"]))
    return runs


def summarise(incident_id: str, events: Sequence[TimelineEvent], state: dict[str, Any]) -> Summary:
    """Status from the timeline alone: open while some run that opened has no close entry (pure)."""
    view = state.get("slack_view") or {}
    opened = next((e for e in events if e.step == "open"), None)
    runs = runs_of(events, state)
    closes = {str(e.data.get("run")): e for e in events if e.step == "close"}
    unclosed = [r for r in runs if r not in closes]
    if unclosed or not closes:
        status = "open"
    else:
        last = events[-1] if events and events[-1].step == "close" else list(closes.values())[-1]
        status = f"closed: {last.detail or last.outcome}"
    return Summary(
        incident_id=incident_id,
        playbook=str(view.get("playbook") or (opened.detail.split(" ", 1)[0] if opened else "?")),
        waba_id=str((opened.data.get("waba_id") if opened else None) or "?"),
        status=status,
        started_at=str(state.get("started_at") or (events[0].at if events else "")),
        last_at=events[-1].at if events else "",
        runs=runs,
    )


async def live_runs(settings: Settings, incident_id: str | None = None) -> dict[str, dict[str, str]]:
    """Unfinished playbook runs by incident id: {incident: {run id: state}}."""
    from prefect.client.orchestration import PrefectClient
    from prefect.client.schemas.filters import (
        FlowFilter,
        FlowFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    final = {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
    async with PrefectClient(settings.prefect.api_url) as client:
        runs = await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES.values()))),
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(not_any_=list(final)))
            ),
        )
        names = {
            f.id: f.name
            for f in await client.read_flows(
                flow_filter=FlowFilter(name=FlowFilterName(any_=list(FLOW_NAMES.values())))
            )
        }
    out: dict[str, dict[str, str]] = {}
    for run in runs:
        if (run.parameters or {}).get("plan"):
            continue
        owner = (run.parameters or {}).get("incident_id") or f"quick-{names.get(run.flow_id, '?')}-{run.id}"
        if incident_id is None or owner == incident_id:
            out.setdefault(owner, {})[str(run.id)] = (run.state.name if run.state else None) or "?"
    return out


def list_incidents(settings: Settings) -> list[Summary]:
    live = asyncio.run(live_runs(settings))
    out = []
    timelines = open_timelines(settings)
    for name in _names(settings):
        record = timelines.open(name)
        state = record.state()
        summary = summarise(_incident_id(name, state), record.events(), state)
        summary.live_runs = live.get(summary.incident_id, {})
        out.append(summary)
    return sorted(out, key=lambda s: s.started_at, reverse=True)


def show_incident(settings: Settings, incident_id: str) -> tuple[Summary, list[TimelineEvent]]:
    record = record_of(settings, incident_id)
    events = record.events()
    summary = summarise(incident_id, events, record.state())
    summary.live_runs = asyncio.run(live_runs(settings, incident_id)).get(incident_id, {})
    return summary, events


# ---- cancel ----------------------------------------------------------------------------------------


@dataclass
class CancelReport:
    incident_id: str
    cancelled: list[str] = field(default_factory=list)  # runs Prefect cancelled (their hook closed them)
    forced: list[str] = field(default_factory=list)  # runs nobody executed: forced Cancelled, closed here
    closed_here: list[str] = field(default_factory=list)  # dead runs closed directly
    already_closed: bool = False


async def cancel_incident(
    settings: Settings, incident_id: str, *, wait_s: float = 120.0, poll_s: float = 0.5
) -> CancelReport:
    """Cancel the incident's live runs and close it everywhere; idempotent (a closed one stays closed).

    A run still waiting to start (Scheduled) is set Cancelled at once: no process runs its hook, and it
    has put nothing on the timeline or in Slack yet.

    Raises:
        IncidentNotFound: no timeline and no live run for that id (nothing is changed).
        CancelTimedOut: a cancelled run's close entry never appeared (its hook failed twice).
    """
    from prefect.client.orchestration import PrefectClient
    from prefect.states import Cancelled, Cancelling

    live = (await live_runs(settings, incident_id)).get(incident_id, {})
    try:
        record = record_of(settings, incident_id)
    except IncidentNotFound:
        if not live:
            raise
        record = open_timelines(settings).open(incident_id)  # its runs have not started yet
    report = CancelReport(incident_id)
    async with PrefectClient(settings.prefect.api_url) as client:
        waiting: set[str] = set()
        for run_id in live:
            run = await client.read_flow_run(UUID(run_id))
            if run.state is not None and run.state.is_scheduled():  # never started: nothing runs its hook
                await client.set_flow_run_state(UUID(run_id), Cancelled(message=CANCEL_MESSAGE))
                report.cancelled.append(run_id)
            else:
                await client.set_flow_run_state(UUID(run_id), Cancelling(message=CANCEL_MESSAGE))
                waiting.add(run_id)
        deadline = time.monotonic() + wait_s
        while waiting:
            for run_id in sorted(waiting):
                run = await client.read_flow_run(UUID(run_id))
                if run.state is not None and run.state.is_cancelled() and closed_by(record, run_id):
                    waiting.discard(run_id)
                    report.cancelled.append(run_id)
            if waiting and time.monotonic() > deadline:
                break
            if waiting:
                await asyncio.sleep(poll_s)
        for run_id in sorted(waiting):  # nobody executes it (no launcher), or its hook never closed it
            run = await client.read_flow_run(UUID(run_id))
            if run.state is None or not run.state.is_cancelled():
                await client.set_flow_run_state(UUID(run_id), Cancelled(message=CANCEL_MESSAGE), force=True)
            await close_incident(settings, record, run_id, "cancelled", CANCEL_MESSAGE)
            report.forced.append(run_id)
    summary = summarise(incident_id, record.events(), record.state())
    for run_id in summary.runs:
        if run_id not in live and not closed_by(record, run_id):
            await close_incident(settings, record, run_id, "cancelled", CANCEL_MESSAGE)
            report.closed_here.append(run_id)
    report.already_closed = not (report.cancelled or report.forced or report.closed_here)
    return report


# ---- output ----------------------------------------------------------------------------------------


def _table(rows: Sequence[Sequence[str]], header: Sequence[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]
    return "\n".join([lines[0], "  ".join("-" * w for w in widths), *lines[1:]])


def render_list(summaries: Sequence[Summary], *, as_json: bool) -> str:
    if as_json:
        return json.dumps([asdict(s) for s in summaries], indent=2)
    if not summaries:
        return "no incidents"
    rows = [
        (
            s.incident_id,
            s.playbook,
            s.waba_id,
            s.status,
            s.started_at[:19],
            ", ".join(f"{r[:8]} {st}" for r, st in s.live_runs.items()) or "-",
        )
        for s in summaries
    ]
    return _table(rows, ("INCIDENT", "PLAYBOOK", "WABA", "STATUS", "STARTED (UTC)", "LIVE RUNS"))


def render_show(summary: Summary, events: Sequence[TimelineEvent], *, as_json: bool) -> str:
    if as_json:
        return json.dumps({**asdict(summary), "timeline": [e.model_dump() for e in events]}, indent=2)
    head = [
        f"incident  {summary.incident_id}",
        f"playbook  {summary.playbook} on WABA {summary.waba_id}",
        f"status    {summary.status}",
        f"started   {summary.started_at}",
        "runs      " + (", ".join(f"{r} ({summary.live_runs.get(r, 'ended')})" for r in summary.runs) or "-"),
    ]
    rows = [
        (str(e.seq), e.at[11:23], e.step, e.outcome, e.actor or "", e.target or "", e.detail[:80])
        for e in events
    ]
    return (
        "\n".join(head)
        + "\n\n"
        + _table(rows, ("#", "AT (UTC)", "STEP", "OUTCOME", "ACTOR", "TARGET", "DETAIL"))
    )


def render_cancel(report: CancelReport, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(asdict(report), indent=2)
    if report.already_closed:
        return f"incident {report.incident_id} was already closed; nothing to cancel"
    lines = [f"incident {report.incident_id} closed"]
    lines += [f"  run {r}: cancelled; its close is on the timeline and in Slack" for r in report.cancelled]
    lines += [f"  run {r}: nobody was executing it: forced Cancelled and closed" for r in report.forced]
    lines += [f"  run {r}: had ended without closing: closed" for r in report.closed_here]
    return "\n".join(lines)
