"""Detection drills: an anomaly with no alert of its own, and the moment the shipped rules notice it.

The Meta simulator delivers the behaviour's webhooks to the intake for real (signed with the app secret,
or forged); the intake counts them (detection/metrics.md); the stack's Prometheus scrapes it and evaluates
detection/rules at the shipped intervals; Alertmanager delivers what fires to the intake. Nothing here
is faster than production: the drill waits as long as the rules' `for:` windows make it wait.

Two times come out: when the alert fired (Alertmanager's `startsAt`, set by Prometheus when the alert
left pending) and when the intake received it (the intake's own audit record of the delivery).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from waguard.drills.scenario import Behaviour, Webhook
from waguard.intake.audit import AuditReader, FileAuditReader

POLL_S = 1.0
RESOLVED_NOTE = "the group resolved"


def numbered(payload: Any, n: int, now: int) -> Any:
    """The payload of delivery `n`: "{n}" in strings replaced, each entry's `time` now (pure).

    Every delivery differs, so the intake's replay check counts each one, as it would Meta's."""
    if isinstance(payload, dict):
        out = {k: numbered(v, n, now) for k, v in payload.items()}
        if "changes" in out and "time" in out:
            out["time"] = now
        return out
    if isinstance(payload, list):
        return [numbered(v, n, now) for v in payload]
    if isinstance(payload, str) and "{n}" in payload:
        return payload.replace("{n}", str(n))
    return payload


@dataclass
class Played:
    """What the behaviour delivered: answers by HTTP status (a forgery gets 401)."""

    sent: int = 0
    answers: dict[str, int] | None = None

    def count(self, status: int | None) -> None:
        self.sent += 1
        self.answers = self.answers or {}
        self.answers[str(status)] = self.answers.get(str(status), 0) + 1


async def play(meta_url: str, intake_url: str, behaviour: Behaviour, stop: asyncio.Event) -> Played:
    """Deliver the one-off webhooks in order, then the repeated ones on their own beat until `stop`."""
    played = Played()
    counter = iter(range(1, 10**9))
    async with httpx.AsyncClient(base_url=meta_url, timeout=30) as sim:

        async def deliver(hook: Webhook) -> None:
            r = await sim.post(
                "/_sim/webhooks/deliver",
                json={
                    "callback_url": f"{intake_url}/webhooks/whatsapp",
                    "signature": hook.signature,
                    "payload": numbered(copy.deepcopy(hook.payload), next(counter), int(time.time())),
                },
            )
            r.raise_for_status()
            played.count(r.json().get("status"))

        async def beat(hook: Webhook, every_s: float) -> None:
            while not stop.is_set():
                started = time.monotonic()
                await deliver(hook)
                try:  # the next beat, or at once when told to stop
                    await asyncio.wait_for(stop.wait(), max(0.0, every_s - (time.monotonic() - started)))
                except TimeoutError:
                    pass

        for hook in behaviour.webhooks:
            if hook.every_s is None:
                await deliver(hook)
        await asyncio.gather(*(beat(h, h.every_s) for h in behaviour.webhooks if h.every_s is not None))
    return played


async def detection_running(prometheus_url: str, alertmanager_url: str) -> None:
    """Raise unless the stack's Prometheus and Alertmanager answer (`waguard up` starts them if installed)."""
    async with httpx.AsyncClient(timeout=5) as http:
        for name, url in (("Prometheus", prometheus_url), ("Alertmanager", alertmanager_url)):
            try:
                ready = (await http.get(f"{url}/-/ready")).status_code == 200
            except httpx.HTTPError:
                ready = False
            if not ready:
                raise RuntimeError(f"{name} is not running at {url}: detection drills need the stack's "
                                   "Prometheus and Alertmanager (sh scripts/sysdeps.sh, then waguard up)")


async def quiet(prometheus_url: str, alert: str, timeout_s: float, poll_s: float = 5.0) -> float:
    """Wait until Prometheus has no pending or firing `alert`; return the seconds waited.

    An alert still active from an earlier anomaly (a drill run again within the rule's window) has the
    same labels as the new one: the new anomaly would only keep it going, and nothing would be sent."""
    started = time.monotonic()
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            r = await http.get(f"{prometheus_url}/api/v1/alerts")
            r.raise_for_status()
            if not any(a["labels"].get("alertname") == alert for a in r.json()["data"]["alerts"]):
                return time.monotonic() - started
            if time.monotonic() - started > timeout_s:
                raise TimeoutError(f"{alert} from an earlier anomaly still active after {timeout_s:.0f} s")
            await asyncio.sleep(poll_s)


def _unix(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def received_at(audit: AuditReader | Path, alert: str, fired_at: float) -> float | None:
    """When the intake took Alertmanager's notification of `alert` (its audit record), if it has (pure read).

    `audit`: the intake's audit log (a file path, or any reader: the shared table of every replica).
    A started or joined incident names the alert in its key; an alert without a playbook is recorded
    with a note. Resolved notifications of earlier groups are not this alert."""
    reader = FileAuditReader(audit) if isinstance(audit, Path) else audit
    if reader.missing() is not None:
        return None
    for line in reader.read_window(fired_at - 1):
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if record.get("source") != "alertmanager" or record.get("status") != 200:
            continue
        at = _unix(str(record.get("at")))
        if at < fired_at - 1:
            continue
        key, note = str(record.get("incident_key") or ""), str(record.get("note") or "")
        if f":{alert}:" in key or (record.get("outcome") == "recorded" and RESOLVED_NOTE not in note):
            return at
    return None


async def fired_at(alertmanager_url: str, alert: str, since: float) -> float | None:
    """When Prometheus fired `alert` (Alertmanager's startsAt), for an instance that started after `since`."""
    async with httpx.AsyncClient(timeout=10) as http:
        r = await http.get(f"{alertmanager_url}/api/v2/alerts", params={"filter": f'alertname="{alert}"'})
    r.raise_for_status()
    starts = [_unix(a["startsAt"]) for a in r.json() if a.get("startsAt")]
    starts = [s for s in starts if s >= since - 1]
    return min(starts) if starts else None


async def wait_for_alert(
    alertmanager_url: str, audit_path: AuditReader | Path, alert: str, since: float, timeout_s: float
) -> tuple[float, float]:
    """(fired, received): wait until the intake has received `alert`, fired after `since`."""
    deadline = time.monotonic() + timeout_s
    fired: float | None = None
    while time.monotonic() < deadline:
        fired = fired or await fired_at(alertmanager_url, alert, since)
        if fired is not None and (got := received_at(audit_path, alert, fired)) is not None:
            return fired, got
        await asyncio.sleep(POLL_S)
    where = "never fired" if fired is None else "fired but never reached the intake"
    raise TimeoutError(
        f"{alert} {where} within {timeout_s:.0f} s of the anomaly (Prometheus at the shipped "
        "intervals; is the stack's Prometheus running?)"
    )
