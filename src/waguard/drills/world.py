"""The simulated world a scenario starts from, and the signal that reveals its incident.

Before each scenario the drill puts the Meta simulator back to the demo business plus the
scenario's changes, writes a fresh messaging token into Vault (the credential that leaks), forgets
the registration ledger that counted calls against the previous world (its file, or with `state.dsn`
its shared tables), and clears the simulator's
request record and faults. The app secret and waguard's own token stay what Vault holds: the intake
and the runner read them from there, and a leaked-secret scenario rotates them the way a person would.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from waguard.drills.scenario import Scenario
from waguard.intake.verify import hub_signature
from waguard.local.stack import MESSAGING_TOKEN_PATH, PIN_PATH, StackUrls, with_messaging_service
from waguard.settings import Settings
from waguard.state.backends import forget_ledger
from waguard.vault.client import VaultClient

TIMEOUT_S = 30.0


@dataclass
class World:
    """What the drill seeded for one scenario: what verification compares against (values stay here)."""

    app_secret: SecretStr
    admin_token: SecretStr
    messaging_token: SecretStr
    pins: dict[str, str]
    attacker_tokens: dict[str, SecretStr] = field(default_factory=dict)  # token id -> value

    def secrets(self) -> list[str]:
        return [s.get_secret_value() for s in (self.app_secret, self.admin_token, self.messaging_token,
                                               *self.attacker_tokens.values())]


RELATIVE_TIME = re.compile(r"^now(?:([+-])([0-9]+)([dhms]))?$")
UNIT_S = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def resolve_times(body: Any, now: float) -> Any:
    """Scenario times written relative to the drill's start ("now-95d", "now") as unix seconds (pure).

    A drill plants drift that happened days ago (a token issued 95 days back, an admin added 5 days
    ago) without committing dates that go stale.
    """
    if isinstance(body, dict):
        return {k: resolve_times(v, now) for k, v in body.items()}
    if isinstance(body, list):
        return [resolve_times(v, now) for v in body]
    if isinstance(body, str) and (m := RELATIVE_TIME.match(body)):
        sign, amount, unit = m.groups()
        delta = int(amount) * UNIT_S[unit] if amount else 0
        return int(now + (delta if sign == "+" else -delta))
    return body


def _merge(seed: dict[str, Any], changes: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Add the scenario's items to the seed's lists; an item with the same identity replaces one, or,
    marked `patch: true`, changes only the fields it names (pure)."""
    def identity(item: dict[str, Any]) -> tuple[Any, ...]:
        if "id" in item:
            return ("id", item["id"])
        return tuple(item.get(k) for k in ("waba_id", "app_id", "user_id"))

    out = copy.deepcopy(seed)
    for name, items in changes.items():
        current = out.setdefault(name, [])
        for item in items:
            if item.get("patch"):
                fields = {k: v for k, v in item.items() if k != "patch"}
                matched = [c for c in current if identity(c) == identity(fields)]
                if not matched:
                    raise ValueError(f"seed patch for {name} matches nothing: {identity(fields)}")
                for c in matched:
                    c.update(fields)
                continue
            current[:] = [c for c in current if identity(c) != identity(item)]
            current.append(item)
    return out


async def reset_world(settings: Settings, urls: StackUrls, vault: VaultClient, scenario: Scenario) -> World:
    from waguard.meta.simulator import demo_seed

    app_secret = (await vault.read_secret(settings.meta.app_secret_path)).value
    admin_token = (await vault.read_secret(settings.meta.token_path)).value
    messaging = SecretStr("EAAG" + secrets.token_urlsafe(48))
    await vault.write_secret(MESSAGING_TOKEN_PATH, messaging)
    pin = SecretStr(f"{secrets.randbelow(10**6):06d}")  # the numbers' PIN, in Vault as the stack keeps it
    await vault.write_secret(PIN_PATH, pin)
    seed = with_messaging_service(demo_seed(app_secret=app_secret.get_secret_value(),
                                            system_user_token=admin_token.get_secret_value(),
                                            pin=pin.get_secret_value()),
                                  messaging.get_secret_value())
    body = resolve_times(_merge(seed.model_dump(mode="json"), scenario.seed), time.time())
    pins = {n["id"]: n["two_step_pin"] for n in body["phone_numbers"] if n.get("two_step_pin")}
    forget_ledger(settings)  # the ledger counted calls against the world we replace (file or shared tables)
    async with httpx.AsyncClient(base_url=urls.meta, timeout=TIMEOUT_S) as sim:
        for method, path, payload in (("POST", "/_sim/seed", body), ("DELETE", "/_sim/faults", None),
                                      ("DELETE", "/_sim/requests", None)):
            (await sim.request(method, path, json=payload)).raise_for_status()
        world = World(app_secret, admin_token, messaging, pins)
        for user in scenario.attacker.tokens_for:
            r = await sim.post("/_sim/tokens", json={"user_id": user, "type": "USER"})
            r.raise_for_status()
            world.attacker_tokens[r.json()["id"]] = SecretStr(r.json()["access_token"])
    return world


async def send_signal(settings: Settings, urls: StackUrls, vault: VaultClient, scenario: Scenario) -> dict:
    """Deliver the scenario's signal to the intake with its source's real signature; return the answer.

    Every send is a fresh delivery (new delivery id, new event time), so a repeated drill is a new
    detection, not a replay. The answer's `sent_at` is the moment the alert left (the request itself,
    after the drill read its signing key and built its client): where a drill's detection time starts.
    """
    if scenario.signal is None:
        raise ValueError(f"{scenario.name} has no signal: its anomaly is a behaviour (drills/behaviour.py)")
    payload = copy.deepcopy(scenario.signal.payload)
    now = int(time.time())
    async with httpx.AsyncClient(timeout=TIMEOUT_S) as http:
        if scenario.signal.source == "meta":
            for entry in payload.get("entry", []):
                entry["time"] = now
            sent_at = time.time()
            r = await http.post(f"{urls.meta}/_sim/webhooks/deliver",
                                json={"callback_url": f"{urls.intake}/webhooks/whatsapp", "payload": payload})
            r.raise_for_status()
            sent = r.json()
            if sent.get("status") != 200:
                raise RuntimeError(f"the intake answered the Meta webhook with {sent.get('status')}: "
                                   f"{sent.get('error')}")
            return {"outcome": "delivered-by-meta-simulator", "body_sha256": sent["body_sha256"],
                    "sent_at": sent_at}
        if scenario.signal.source == "github":
            # Each drill is a genuinely new event: GitHub's replay key is the alert and its updated_at.
            if isinstance(payload.get("alert"), dict):
                payload["alert"]["updated_at"] = datetime.fromtimestamp(now, UTC).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
            body = json.dumps(payload, separators=(",", ":")).encode()
            key = (await vault.read_secret(settings.intake.github_secret_path)).value.get_secret_value()
            headers = {"X-GitHub-Event": "secret_scanning_alert", "X-GitHub-Delivery": str(uuid.uuid4()),
                       "X-Hub-Signature-256": hub_signature(key, body), "Content-Type": "application/json",
                       "User-Agent": "GitHub-Hookshot/waguard-drill"}
            sent_at = time.time()
            r = await http.post(f"{urls.intake}/alerts/github", content=body, headers=headers)
        else:
            stamp = datetime.fromtimestamp(now, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            for alert in payload.get("alerts", []):
                alert["startsAt"] = stamp
            body = json.dumps(payload, separators=(",", ":")).encode()
            token = (
                await vault.read_secret(settings.intake.alertmanager_token_path)
            ).value.get_secret_value()
            sent_at = time.time()
            r = await http.post(
                f"{urls.intake}/alerts/alertmanager",
                content=body,
                headers={
                    "Authorization": f"Bearer {token}",
                    "Content-Type": "application/json",
                    "User-Agent": "Alertmanager/0.25.0",
                },
            )
    if r.status_code != 200:
        raise RuntimeError(
            f"the intake refused the drill's {scenario.signal.source} signal: HTTP {r.status_code} "
            f"{r.text[:200]}"
        )
    return {**r.json(), "sent_at": sent_at}
