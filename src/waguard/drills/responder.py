"""The stand-in responder: what the on-call people do during a drill, through the same doors they use.

It reads the incident's Slack thread on the Slack simulator. When an approval request for its run
appears it waits `delay_s` (a person reading), then clicks Approve as each approver in turn: a Slack
`block_actions` request signed with the signing secret, posted to the intake like Slack would. When
the thread asks for the app-secret reset it does the dashboard step on the Meta simulator's admin
API and writes the new secret into Vault, as the runbook tells a person to. It never touches Prefect.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import httpx
from pydantic import SecretStr

from waguard.local.stack import StackUrls
from waguard.settings import Settings
from waguard.slack.signing import signature_headers
from waguard.vault.client import VaultClient

POLL_S = 0.1
RECLICK_S = 1.0
APPROVAL_BLOCK = "approval-v1:"
APP_SECRET_STEP = "Manual step: reset the app secret"


def _messages(channels: dict[str, list[dict[str, Any]]]) -> Iterator[tuple[str, dict[str, Any]]]:
    for channel, tops in channels.items():
        for top in tops:
            yield channel, top
            for reply in top.get("replies", []):
                yield channel, reply


def approval_requests(channels: dict[str, list[dict[str, Any]]], run_id: str) -> list[tuple[str, dict]]:
    """(channel, button value) of every approval request for `run_id` on the simulator (pure)."""
    found = []
    for channel, message in _messages(channels):
        for block in message.get("blocks") or []:
            if block.get("type") == "actions" and str(block.get("block_id", "")).startswith(APPROVAL_BLOCK):
                for element in block.get("elements", []):
                    try:
                        value = json.loads(element.get("value", ""))
                    except ValueError:
                        continue
                    if value.get("run") == run_id and element.get("action_id") == "approve":
                        found.append((channel, {**value, "block_id": block["block_id"]}))
    return found


def asks_for_app_secret_reset(channels: dict[str, list[dict[str, Any]]], incident_id: str) -> bool:
    return any(APP_SECRET_STEP in str(m.get("text", "")) and incident_id in str(m.get("text", ""))
               for _, m in _messages(channels))


def click_body(user: str, channel: str, value: dict[str, str]) -> bytes:
    """A block_actions body as Slack posts a button click (form-encoded `payload=`)."""
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": user.lower(), "team_id": "T0WAGUARD"},
        "api_app_id": "A0WAGUARD",
        "team": {"id": "T0WAGUARD", "domain": "waguard"},
        "container": {"type": "message", "channel_id": channel},
        "channel": {"id": channel},
        "trigger_id": "drill",
        "response_url": "https://hooks.slack.com/actions/drill",
        "actions": [
            {
                "action_id": "approve",
                "block_id": value["block_id"],
                "type": "button",
                "value": json.dumps({k: value[k] for k in ("run", "step", "nonce")}, separators=(",", ":")),
                "action_ts": f"{time.time():.6f}",
                "text": {"type": "plain_text", "text": "Approve"},
            }
        ],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@dataclass
class Responder:
    settings: Settings
    urls: StackUrls
    vault: VaultClient
    approvers: list[str]
    dashboard_steps: list[str]
    delay_s: float = 0.0
    human: bool = False
    say: Any = print
    done: set[str] = field(default_factory=set)     # (step, nonce) approved, dashboard steps done
    clicks: list[dict[str, Any]] = field(default_factory=list)
    clicked: set[tuple[str, str]] = field(default_factory=set)  # (nonce, approver) the intake took

    async def work(self, run_id: str, incident_id: str, stop: asyncio.Event) -> None:
        """Act on the run's thread until `stop` is set."""
        signing = (await self.vault.read_secret(self.settings.slack.signing_secret_path)).value
        seen_at: dict[str, float] = {}
        async with httpx.AsyncClient(timeout=30) as http:
            while not stop.is_set():
                channels = (await http.get(f"{self.urls.slack}/_sim/messages")).json().get("channels", {})
                for channel, value in approval_requests(channels, run_id):
                    key = f"{value['step']}:{value['nonce']}"
                    if key in self.done:
                        continue
                    first = seen_at.setdefault(key, time.monotonic())
                    if self.human:
                        self.say(f"    waiting for a person: approve `{value['step']}` in Slack or at "
                                 f"{self.settings.prefect.ui_url}/runs/flow-run/{run_id}")
                        self.done.add(key)
                    elif time.monotonic() - first >= self.delay_s:
                        if await self._approve(http, signing, channel, value):
                            self.done.add(key)
                        else:  # the intake could not take it (Vault down, say): click again shortly
                            seen_at[key] = time.monotonic() - self.delay_s + RECLICK_S
                if ("reset-app-secret" in self.dashboard_steps and "reset-app-secret" not in self.done
                        and asks_for_app_secret_reset(channels, incident_id)):
                    self.done.add("reset-app-secret")
                    if self.human:
                        self.say(f"    waiting for a person: reset the app secret (POST {self.urls.meta}"
                                 f"/_sim/app/reset-secret) and write it to Vault at "
                                 f"{self.settings.meta.app_secret_path}")
                    else:
                        await asyncio.sleep(self.delay_s)
                        await self._reset_app_secret(http)
                await asyncio.sleep(POLL_S)

    async def _approve(self, http: httpx.AsyncClient, signing: SecretStr, channel: str,
                       value: dict[str, str]) -> bool:
        """Each approver clicks once; False if the intake could not take a click (5xx): try again later."""
        approvers = [u for u in self.approvers if (value["nonce"], u) not in self.clicked]
        for user in approvers:
            body = click_body(user, channel, value)
            headers = {**signature_headers(signing.get_secret_value(), int(time.time()), body),
                       "Content-Type": "application/x-www-form-urlencoded"}
            r = await http.post(f"{self.urls.intake}/slack/interactions", content=body, headers=headers)
            self.clicks.append({"step": value["step"], "user": user, "status": r.status_code})
            self.say(f"    {user} approved {value['step']} in Slack (intake answered {r.status_code})")
            if r.status_code >= 500:
                return False
            self.clicked.add((value["nonce"], user))
        return True

    async def _reset_app_secret(self, http: httpx.AsyncClient) -> None:
        """The App Dashboard's Reset, then `bao kv put` of the new value, as the runbook says."""
        from waguard.vault.errors import VaultUnavailable

        r = await http.post(f"{self.urls.meta}/_sim/app/reset-secret")
        r.raise_for_status()
        new = SecretStr(r.json()["app_secret"])
        for _ in range(60):  # a person whose `bao kv put` fails tries again
            try:
                await self.vault.write_secret(self.settings.meta.app_secret_path, new)
                break
            except VaultUnavailable:
                await asyncio.sleep(1)
        self.say("    reset the app secret in the App Dashboard and wrote it to Vault")
