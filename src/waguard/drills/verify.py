"""Independent verification: after a scenario, read the end state from the Meta simulator and Vault.

Nothing here asks the flow what it did. Each check reads the target the way an auditor would (the
simulator's admin state, Graph's own `debug_token` and `appsecret_proof` checks, Vault's current
versions) and says what it found. Values are compared, never printed.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass

import httpx
from pydantic import SecretStr

from waguard.drills import scheduled
from waguard.drills.faults import mutating_requests
from waguard.drills.scenario import Expectation
from waguard.drills.world import World
from waguard.local.stack import StackUrls
from waguard.meta.client import GraphClient
from waguard.meta.errors import (
    PERMISSION_CODES,
    TOKEN_INVALID_CODES,
    MetaError,
    MetaInvalidRequest,
    MetaPermissionDenied,
    MetaTokenInvalid,
)
from waguard.playbook.hygiene_policy import load_hygiene_policy
from waguard.settings import Settings
from waguard.steps.business import foreign_overrides
from waguard.vault.client import VaultClient

# Checks about named targets: without ids they would pass having looked at nothing.
NEEDS_IDS = frozenset({"templates_absent", "templates_present", "tokens_invalid", "vault_token_valid",
                       "only_business_users", "numbers_deregistered", "pin_rotated", "tokens_young"})


def credential_refused(err: MetaError) -> bool:
    """Whether Meta's answer proves the credential itself is dead or shut out: code 190 (invalid
    token) or 10 / 200-299 (permission), as Meta's own envelope says. A 5xx, a throttle, a timeout
    or an envelope-less 401/403 from something in between proves nothing."""
    return (isinstance(err, MetaTokenInvalid) and err.code in TOKEN_INVALID_CODES) or (
        isinstance(err, MetaPermissionDenied) and err.code in PERMISSION_CODES)


def proof_refused(err: MetaError) -> bool:
    """Whether Meta refused the appsecret_proof. Meta gives that refusal no code of its own (code 100,
    "Invalid appsecret_proof provided in the API argument"), so its message is the only marker."""
    return isinstance(err, MetaInvalidRequest) and err.code == 100 and "appsecret_proof" in err.message


@dataclass(frozen=True)
class CheckResult:
    check: str
    ok: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return {"check": self.check, "ok": self.ok, "detail": self.detail}


class Verifier:
    def __init__(self, settings: Settings, urls: StackUrls, vault: VaultClient, world: World,
                 consumer: scheduled.ConsumerTally | None = None) -> None:
        self.settings, self.urls, self.vault, self.world = settings, urls, vault, world
        self.consumer = consumer  # what the scenario's Vault-reading consumer saw, if it had one

    async def run(self, expectations: list[Expectation]) -> list[CheckResult]:
        async with httpx.AsyncClient(base_url=self.urls.meta, timeout=30) as sim:
            self.state = (await sim.get("/_sim/state")).json()
            self.tokens = {t["id"]: t for t in (await sim.get("/_sim/tokens")).json()["tokens"]}
            self.sim = sim
            results = []
            for e in expectations:
                if e.check in NEEDS_IDS and not e.ids:
                    results.append(CheckResult(e.check, False, "no ids given: nothing was verified"))
                    continue
                try:
                    ok, detail = await getattr(self, e.check)(e.ids)
                except MetaError as err:
                    ok, detail = False, f"could not tell: Graph answered {type(err).__name__}"
                except Exception as err:  # noqa: BLE001 - a check that cannot read its target has failed
                    ok, detail = False, f"could not tell: {type(err).__name__}"
                results.append(CheckResult(e.check, ok, detail))
            records = (await sim.get("/_sim/requests")).json()["requests"]
            return [*results, *self.no_repeats(records)]

    def no_repeats(self, records: list[dict]) -> list[CheckResult]:
        """Every scenario, faults or not: no destructive Graph call succeeded twice for the same target,
        and no number spent more than one register/deregister attempt of its 10-per-72-h budget."""
        seen: dict[str, int] = {}
        for r in mutating_requests(records):
            key = f"{r['method']} {r['path']} {json.dumps(r.get('body') or r.get('query'), sort_keys=True)}"
            seen[key] = seen.get(key, 0) + 1
        repeated = sorted(k.split(" {")[0] for k, n in seen.items() if n > 1)
        spent = {n["id"]: n["registration_attempts_in_window"] for n in self.state["phone_numbers"]
                 if n["registration_attempts_in_window"]}
        return [
            CheckResult(
                "no_repeated_destructive_call",
                not repeated,
                f"repeated: {repeated}" if repeated else f"{len(seen)} destructive call(s), each once",
            ),
            CheckResult(
                "registration_budget",
                all(v <= 1 for v in spent.values()),
                f"register/deregister attempts per number: {spent or 'none'}",
            ),
        ]

    async def _graph(self, app_secret: SecretStr | None = None) -> GraphClient:
        meta = self.settings.meta
        token = (await self.vault.read_secret(meta.token_path)).value
        secret = app_secret or (await self.vault.read_secret(meta.app_secret_path)).value
        return GraphClient(base_url=self.urls.meta, version=meta.graph_version, token=token,
                           app_secret=secret, max_retries=0)

    async def templates_absent(self, ids: list[str]) -> tuple[bool, str]:
        left = sorted(set(ids) & {t["id"] for t in self.state["templates"]})
        return not left, f"still present: {left}" if left else f"{len(ids)} gone"

    async def templates_present(self, ids: list[str]) -> tuple[bool, str]:
        missing = sorted(set(ids) - {t["id"] for t in self.state["templates"]})
        return not missing, f"wrongly deleted: {missing}" if missing else f"{len(ids)} untouched"

    async def app_secret_rotated(self, _ids: list[str]) -> tuple[bool, str]:
        """The seeded secret's appsecret_proof is refused, the one Vault now holds accepted."""
        current = (await self.vault.read_secret(self.settings.meta.app_secret_path)).value
        if hmac.compare_digest(current.get_secret_value(), self.world.app_secret.get_secret_value()):
            return False, "Vault still holds the seeded app secret"
        verdicts = {}
        for label, secret in (("old", self.world.app_secret), ("new", current)):
            graph = await self._graph(secret)
            try:
                await graph.list_phone_numbers(self.settings.meta.waba_id)
                verdicts[label] = "accepted"
            except MetaError as err:
                verdicts[label] = "refused" if proof_refused(err) else f"unknown ({type(err).__name__})"
            finally:
                await graph.aclose()
        ok = verdicts == {"old": "refused", "new": "accepted"}
        return ok, f"old secret's proof {verdicts['old']}, Vault's new one {verdicts['new']}"

    async def tokens_invalid(self, ids: list[str]) -> tuple[bool, str]:
        """Seeded tokens (`attacker` = every token the drill issued to the attacker) fail debug_token."""
        values = {"tok-messaging-service": self.world.messaging_token, **self.world.attacker_tokens}
        wanted = [t for i in ids for t in (list(self.world.attacker_tokens) if i == "attacker" else [i])]
        unknown = [t for t in wanted if t not in values and t not in self.tokens]
        if not wanted or unknown:
            return False, f"no such token(s) to check: {unknown or ids}"
        graph = await self._graph()
        alive = []
        try:
            for token_id in wanted:
                info = await graph.debug_token(values[token_id]) if token_id in values else None
                if (info is not None and info.is_valid) or self.tokens.get(token_id, {}).get("is_valid"):
                    alive.append(token_id)
        finally:
            await graph.aclose()
        return not alive, f"still valid: {alive}" if alive else f"{len(wanted)} invalid by debug_token"

    async def attacker_locked_out(self, _ids: list[str]) -> tuple[bool, str]:
        """A removed user's token stays valid (it is the person's), but must not reach the business:
        Meta must refuse it with 190 or a permission code. Any other failure is not proof."""
        meta = self.settings.meta
        still, unknown = [], []
        for token_id, value in self.world.attacker_tokens.items():
            graph = GraphClient(
                base_url=self.urls.meta, version=meta.graph_version, token=value, max_retries=0
            )
            try:
                await graph.list_phone_numbers(meta.waba_id)
                still.append(token_id)
            except MetaError as err:
                if not credential_refused(err):
                    unknown.append(f"{token_id} ({type(err).__name__})")
            finally:
                await graph.aclose()
        n = len(self.world.attacker_tokens)
        if still or unknown:
            return False, f"still reaching the WABA: {still}; not proven refused: {unknown}"
        return n > 0, f"{n} attacker token(s) refused"

    async def old_secret_webhooks_windowed(self, ids: list[str]) -> tuple[bool, str]:
        """Meta's in-flight webhooks signed with the old secret still verify, but only inside a bounded
        window; a wrong signature never does. Asked of the intake itself, over HTTP."""
        import time
        from datetime import UTC, datetime

        window = json.loads((await self.vault.read_secret(self.settings.intake.rotation_window_path)
                             ).value.get_secret_value())
        left_s = (datetime.fromisoformat(window["until"]) - datetime.now(UTC)).total_seconds()
        harmless = {"object": "whatsapp_business_account", "entry": [{"id": self.settings.meta.waba_id,
                    "time": int(time.time()), "changes": [{"field": "phone_number_quality_update",
                                                           "value": {"event": "ONBOARDING"}}]}]}
        answers = {}
        for signature in ("previous_secret", "wrong"):
            r = await self.sim.post(
                "/_sim/webhooks/deliver",
                json={
                    "callback_url": f"{self.urls.intake}/webhooks/whatsapp",
                    "payload": harmless,
                    "signature": signature,
                },
            )
            answers[signature] = r.json().get("status")
        ok = answers == {"previous_secret": 200, "wrong": 401} and 0 < left_s <= float(ids[0] if ids else 900)
        return ok, f"old-secret webhook -> {answers['previous_secret']}, wrong -> {answers['wrong']}, " \
                   f"window closes in {left_s:.0f} s"

    async def nothing_changed(self, _ids: list[str]) -> tuple[bool, str]:
        """No mutating Graph call reached the simulator since the world was reset: nothing acted."""
        records = (await self.sim.get("/_sim/requests")).json()["requests"]
        changed = sorted(
            {
                f"{r['method']} {r['path']}"
                for r in records
                if r.get("method") in ("POST", "DELETE")
                and not str(r.get("path", "")).startswith("/_sim")
                and (r.get("status") or 200) < 400
            }
        )
        return not changed, f"changed: {changed}" if changed else "no mutating Graph call"

    async def vault_token_valid(self, paths: list[str]) -> tuple[bool, str]:
        graph = await self._graph()
        bad = []
        try:
            for path in paths:
                value = (await self.vault.read_secret(path)).value
                if value.get_secret_value() == self.world.messaging_token.get_secret_value():
                    bad.append(f"{path} (not rotated)")
                elif not (await graph.debug_token(value)).is_valid:
                    bad.append(f"{path} (invalid)")
        finally:
            await graph.aclose()
        return not bad, f"bad: {bad}" if bad else f"{len(paths)} new token(s) valid"

    async def only_business_users(self, ids: list[str]) -> tuple[bool, str]:
        users = {u["id"] for u in self.state["business_users"]}
        return users == set(ids), f"business users now {sorted(users)}"

    async def overrides_ours(self, _ids: list[str]) -> tuple[bool, str]:
        subs = [s for s in self.state["subscribed_apps"] if s["waba_id"] == self.settings.meta.waba_id]
        foreign = foreign_overrides(
            (s.get("override_callback_uri") for s in subs), self.settings.intake.public_url
        )
        ok = bool(subs) and not foreign
        return ok, f"{len(subs)} subscription(s), foreign overrides: {len(foreign)}"

    async def numbers_deregistered(self, ids: list[str]) -> tuple[bool, str]:
        known = {n["id"]: n for n in self.state["phone_numbers"]}
        registered = sorted(i for i in ids if i not in known or known[i]["registered"])
        return (
            not registered,
            f"still registered or unknown: {registered}" if registered else f"{len(ids)} deregistered",
        )

    async def pin_rotated(self, ids: list[str]) -> tuple[bool, str]:
        vault_pin = (await self.vault.read_secret("meta/two-step-pin")).value.get_secret_value()
        bad = []
        for number in ids:
            pin = (await self.sim.get(f"/_sim/phone_numbers/{number}/pin")).json().get("pin")
            if pin == self.world.pins.get(number) or pin != vault_pin:
                bad.append(number)
        return (
            not bad,
            f"PIN not rotated to Vault's: {bad}" if bad else f"{len(ids)} PIN(s) = Vault's new PIN",
        )

    async def tokens_young(self, paths: list[str]) -> tuple[bool, str]:
        """Each token at `paths` is valid, expiring and younger than the hygiene policy's rotation age,
        by debug_token's own times."""
        ages = load_hygiene_policy(self.settings.runbooks_dir, self.settings.meta.waba_id).tokens
        graph = await self._graph()
        try:
            return await scheduled.tokens_young(graph, self.vault, paths, ages.rotate_after_days, time.time())
        finally:
            await graph.aclose()

    async def consumer_no_failed_calls(self, _ids: list[str]) -> tuple[bool, str]:
        """The consumer that read its token from Vault before every Graph call made calls through the
        whole run, used more than one token version (it lived through the rotation) and none failed."""
        tally = self.consumer
        if tally is None:
            return False, "no consumer ran: nothing was measured"
        detail = (f"{tally.ok} ok, {tally.failed} failed Graph call(s) over {len(tally.versions)} Vault "
                  f"version(s)" + (f"; stopped: {tally.error}" if tally.error else ""))
        return tally.ok > 0 and tally.failed == 0 and len(tally.versions) > 1, detail
