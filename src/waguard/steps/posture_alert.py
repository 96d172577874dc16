"""A critical posture finding (an unknown admin) as an alert to the intake, shaped as Alertmanager sends
it: the intake verifies it like any alert and routes it (runbooks/routing.yaml) to the account-takeover
playbook. The audit never acts itself.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from waguard.playbook.ports import Ports
from waguard.steps.posture import Finding

ALERTNAME = "PostureUnknownAdmin"


def takeover_alert(found: Sequence[Finding], business_id: str, waba_id: str, now: float) -> dict[str, Any]:
    """The Alertmanager webhook (v4) body for the critical findings: one alert per user (pure).

    The group key names the business only, so a finding that persists across audits joins the open
    incident (the intake's quiet period) instead of starting a second takeover run.
    """
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    common = {
        "alertname": ALERTNAME,
        "waba_id": waba_id,
        "playbook": "account-takeover",
        "severity": "critical",
    }
    alerts = [{"status": "firing", "labels": {**common, "user": f.target},
               "annotations": {"summary": f"{f.kind}: {f.detail}"[:300]}, "startsAt": stamp,
               "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "waguard://posture-audit",
               "fingerprint": f"posture-{f.target}"} for f in found]
    return {
        "receiver": "waguard",
        "status": "firing",
        "version": "4",
        "truncatedAlerts": 0,
        "groupKey": f'{{}}:{{alertname="{ALERTNAME}", business_id="{business_id}"}}',
        "groupLabels": {"alertname": ALERTNAME, "business_id": business_id},
        "commonLabels": common,
        "commonAnnotations": {"summary": f"{len(found)} critical posture finding(s)"},
        "externalURL": "waguard://posture-audit",
        "alerts": alerts,
    }


async def send_takeover_alert(ports: Ports, found: Sequence[Finding], now: float,
                              transport: httpx.AsyncBaseTransport | None = None) -> dict[str, Any]:
    """POST the alert to the intake with Alertmanager's bearer token from Vault; the intake's answer."""
    s = ports.settings
    body = json.dumps(takeover_alert(found, s.meta.business_id, s.meta.waba_id, now), separators=(",", ":"))
    token = (await ports.vault.read_secret(s.intake.alertmanager_token_path)).value
    async with httpx.AsyncClient(transport=transport, timeout=30) as http:
        r = await http.post(
            f"{s.intake.public_url.rstrip('/')}/alerts/alertmanager",
            content=body.encode(),
            headers={
                "Authorization": f"Bearer {token.get_secret_value()}",
                "Content-Type": "application/json",
                "User-Agent": "waguard-posture-audit/1",
            },
        )
    if r.status_code != 200:
        raise RuntimeError(f"the intake refused the posture alert: HTTP {r.status_code} {r.text[:200]}")
    answer: dict[str, Any] = r.json()
    return answer
