"""What a playbook run holds: its ports to Meta, Vault and Slack, the plan-mode gate, and Slack status.

Ports are built once per run from settings; credentials are read from Vault here and live only in
memory (as `SecretStr` inside the clients). Flow parameters and task results carry Vault paths.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr

from waguard.approval import Announcer, Decision
from waguard.incident import IncidentRecord
from waguard.meta import wire
from waguard.meta.client import GraphClient, quiet_http_loggers
from waguard.settings import Settings
from waguard.slack.blocks import ApprovalRequest, IncidentView, StepLine
from waguard.slack.client import MessageRef, SlackClient
from waguard.vault.client import VaultClient


class Ports:
    """The clients one run uses. Build with `open_ports`.

    A plain class on purpose: Prefect walks dataclass and model task arguments and rebuilds them,
    which would hand each task a copy; the clients must stay shared (and `reload_graph` seen by all).
    """

    def __init__(self, settings: Settings, vault: VaultClient, graph: GraphClient, slack: SlackClient) -> None:
        self.settings, self.vault, self.graph, self.slack = settings, vault, graph, slack

    async def reload_graph(self) -> None:
        """Rebuild the Graph client from Vault (after the app secret or our token changed)."""
        old = self.graph
        self.graph = await graph_from_vault(self.settings, self.vault)
        await old.aclose()


async def graph_from_vault(settings: Settings, vault: VaultClient, *, app_secret_version: int | None = None,
                           token: SecretStr | None = None) -> GraphClient:
    """A Graph client keyed with what Vault holds (a given app-secret version, e.g. the old one)."""
    meta = settings.meta
    token = token or (await vault.read_secret(meta.token_path)).value
    secret = (await vault.read_secret(meta.app_secret_path, version=app_secret_version)).value
    return GraphClient.from_settings(meta, token=token, app_secret=secret)


@contextlib.asynccontextmanager
async def open_ports(settings: Settings) -> AsyncIterator[Ports]:
    quiet_http_loggers()
    vault = VaultClient.from_settings(settings.vault)
    await vault.check()
    graph = await graph_from_vault(settings, vault)
    slack_token = (await vault.read_secret(settings.slack.bot_token_path)).value
    slack = SlackClient.from_settings(settings.slack, slack_token)
    ports = Ports(settings, vault, graph, slack)
    try:
        yield ports
    finally:
        await ports.graph.aclose()
        with contextlib.suppress(Exception):
            vault.close()


# --- plan mode ----------------------------------------------------------------------------------


class PlannedCall(BaseModel):
    """A mutating call a plan-mode run would make."""

    step: str
    target: str
    call: str  # e.g. "POST /v23.0/5000000001/deregister" or "vault kv put secret/meta/app-secret"


def describe(req: wire.GraphRequest, version: str) -> str:
    """The exact Graph call, with parameter names but no values (values may be secret)."""
    keys = sorted({*req.params, *(req.json or {}), *(req.form or {})})
    suffix = f" ({', '.join(keys)})" if keys else ""
    return f"{req.method} /{version}{req.path}{suffix}"


class Effects:
    """Every mutating call goes through here, so plan mode can record it instead of making it.

    A plain class for the same reason as `Ports`: tasks must append to the one list.
    """

    def __init__(self, plan: bool, incident: IncidentRecord, graph_version: str) -> None:
        self.plan, self.incident, self.graph_version = plan, incident, graph_version
        self.planned: list[PlannedCall] = []

    async def graph(self, step: str, target: str, req: wire.GraphRequest,
                    act: Callable[[], Awaitable[Any]]) -> bool:
        """Make (or in plan mode record) one Graph call. Returns True when it was made."""
        return await self.other(step, target, describe(req, self.graph_version), act)

    async def other(self, step: str, target: str, call: str, act: Callable[[], Awaitable[Any]]) -> bool:
        if self.plan:
            self.planned.append(PlannedCall(step=step, target=target, call=call))
            return False
        await act()
        self.incident.append(step, "done", call, target=target)
        return True


# --- Slack status -------------------------------------------------------------------------------


@dataclass
class SlackAnnouncer(Announcer):
    """One thread per incident: opened once (a re-run finds it), a reply per step, the head updated."""

    slack: SlackClient
    settings: Settings
    incident: IncidentRecord
    view: IncidentView
    run_id: str
    enabled: bool = True  # plan mode posts nothing
    head: MessageRef | None = None
    approvals: dict[str, list[tuple[MessageRef, ApprovalRequest]]] = field(default_factory=dict)

    async def open(self) -> None:
        if not self.enabled:
            return
        state = self.incident.state()
        if "slack_ts" in state:
            self.head = MessageRef(channel=state["slack_channel"], ts=state["slack_ts"])
            await self.say(f"Run {self.run_id} resumed this incident.")
            return
        self.head = await self.slack.open_incident(self.settings.slack.channel, self.view)
        self.incident.remember(slack_channel=self.head.channel, slack_ts=self.head.ts)

    async def say(self, text: str) -> None:
        if self.enabled and self.head:
            await self.slack.reply(self.head, text)

    async def update(self, **changes: Any) -> None:
        self.view = self.view.model_copy(update=changes)
        if self.enabled and self.head:
            # Kept so a cancellation hook, in another process, can show the final state (waguard.closing).
            self.incident.remember(slack_view=self.view.model_dump(mode="json"))
            await self.slack.update_incident(self.head, self.view)

    async def step(self, name: str, summary: str, outcome: str = "done") -> None:
        steps = (*self.view.steps, StepLine(step=name, outcome=outcome, detail=summary[:500]))
        await self.update(current_step=name, steps=steps)
        await self.say(f"*{name}*: {summary}")

    # Announcer: what the approval gate tells people.
    async def request(self, step: str, nonce: str, summary: str) -> None:
        if not (self.enabled and self.head):
            return
        req = ApprovalRequest(run_id=self.run_id, step=step, nonce=nonce, summary=summary)
        ref = await self.slack.post_approval(self.head, req)
        self._remember_open(step, ref, req)
        await self.update(state="awaiting approval", current_step=step)

    async def escalate(self, step: str, nonce: str, summary: str) -> None:
        if not (self.enabled and self.head):
            return
        req = ApprovalRequest(run_id=self.run_id, step=step, nonce=nonce, summary=summary)
        esc = await self.slack.open_incident(self.settings.slack.escalation_channel,
                                             self.view.model_copy(update={"state": "ESCALATED: approval needed"}))
        # The escalated copy is a second set of live buttons: remember it so `decided` disarms it too.
        self._remember_open(step, await self.slack.post_approval(esc, req), req)
        await self.say(f"No decision yet on *{step}*: escalated to <#{self.settings.slack.escalation_channel}>.")

    async def decided(self, step: str, decision: Decision) -> None:
        if not (self.enabled and self.head):
            return
        for ref, req in self.approvals.pop(step, []):
            await self.slack.mark_decided(ref, req, decision.outcome, decision.by)
        self.incident.remember(open_approvals=[a for a in self.incident.state().get("open_approvals", [])
                                               if not (a.get("run") == self.run_id and a.get("step") == step)])
        await self.update(state=decision.outcome)

    def _remember_open(self, step: str, ref: MessageRef, req: ApprovalRequest) -> None:
        """Live buttons, kept in memory and in the incident state (a hook or a re-run disarms them)."""
        self.approvals.setdefault(step, []).append((ref, req))
        item = {"run": self.run_id, "step": step, "channel": ref.channel, "ts": ref.ts,
                "request": req.model_dump(mode="json")}
        self.incident.remember(open_approvals=[*self.incident.state().get("open_approvals", []), item])
