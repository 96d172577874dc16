"""`waguard doctor`: a read-only preflight of the configured environment, live or local.

It reads what a playbook run would rely on and says, check by check, whether it holds and how to fix
it (verdicts in `checks.py`). It never writes to Meta or Slack: Graph calls are GETs, Slack calls are
auth.test and conversations.info. Vault is read under the AppRole identities the services run as
(`--identities DIR`, the files docs/production.md step 1 makes; default: the local stack's), never
under an operator's or root token: a read only a root token can make proves nothing about a run.

    playbook  -> the Meta token and app secret, the Slack bot token, every path the playbooks read
    evidence  -> the signing key (and the encryption key when bundles are encrypted)
    intake    -> the webhook verify token and the Slack signing secret
"""

from __future__ import annotations

import ast
import asyncio
import json
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from pydantic import SecretStr

from waguard.errors import WaguardError
from waguard.meta.client import GraphClient
from waguard.meta.errors import MetaError, MetaTokenInvalid
from waguard.meta.models import TokenInfo
from waguard.operate import checks
from waguard.operate.checks import Check
from waguard.playbook.accounts import load_registry
from waguard.playbook.hygiene_policy import load_hygiene_policy
from waguard.playbook.names import DEPLOYMENTS
from waguard.settings import Settings
from waguard.vault.client import VaultClient
from waguard.vault.identities import Identity, login_settings, read_login

PROOF_REFUSED = "appsecret_proof"  # Meta's messages for a missing or wrong proof name the parameter


def _why(err: BaseException) -> str:
    """A short reason that names no secret (waguard's errors are written not to)."""
    if isinstance(err, WaguardError):
        return str(err)[:200]
    return type(err).__name__


@dataclass
class Logins:
    """Vault clients logged in as each identity found in the identities directory."""

    directory: Path
    clients: dict[Identity, VaultClient] = field(default_factory=dict)
    problems: dict[Identity, str] = field(default_factory=dict)

    @classmethod
    async def open(cls, settings: Settings, directory: Path) -> Logins:
        logins = cls(directory)
        for identity in ("playbook", "evidence", "intake"):
            login = read_login(directory, identity)
            if login is None:
                logins.problems[identity] = f"no {identity}.role-id / {identity}.secret-id in {directory}"
                continue
            client = VaultClient.from_settings(login_settings(settings.vault, login))
            try:
                await client.check()
            except Exception as err:  # noqa: BLE001 - a failed login is a verdict, not a crash
                logins.problems[identity] = f"login as waguard-{identity} failed: {_why(err)}"
                client.close()
                continue
            logins.clients[identity] = client
        return logins

    def close(self) -> None:
        for client in self.clients.values():
            client.close()

    async def read(self, identity: Identity, path: str) -> tuple[SecretStr | None, str | None]:
        """(value, None), or (None, why it could not be read)."""
        client = self.clients.get(identity)
        if client is None:
            return None, self.problems.get(identity, f"no {identity} login")
        try:
            value = (await client.read_secret(path)).value
        except Exception as err:  # noqa: BLE001
            return None, _why(err)
        return (value, None) if value.get_secret_value() else (None, "empty")


def playbook_paths(settings: Settings) -> list[str]:
    """Every KV path a playbook run reads: settings' paths and the registry's tokens and PINs."""
    paths = [
        settings.meta.token_path,
        settings.meta.app_secret_path,
        settings.slack.bot_token_path,
        settings.intake.alertmanager_token_path,
    ]
    for business in load_registry(settings.runbooks_dir, settings).businesses:
        for waba in business.wabas:
            paths += [t.path for t in waba.tokens] + ([waba.pin_path] if waba.pin_path else [])
    return list(dict.fromkeys(paths))


def deployment_names(project: Path) -> list[str]:
    """The deployments the launcher registers, as Prefect names them ("<flow>/<deployment>"):
    prefect.yaml's, else waguard's own playbooks. A deployment name alone is not unique in Prefect
    (another flow may have a deployment of the same name), so the flow is part of the name."""
    spec = project / "prefect.yaml"
    if not spec.is_file():
        return list(DEPLOYMENTS.values())
    entries = (yaml.safe_load(spec.read_text()) or {}).get("deployments") or []
    return [f"{flow_name(project, str(d.get('entrypoint', '')))}/{d['name']}" for d in entries]


def flow_name(project: Path, entrypoint: str) -> str:
    """The name Prefect gives the flow at `entrypoint` ("path.py:function"), read from the source
    without importing it: `@flow(name=...)`, else the function's name with "_" as "-" (Prefect's
    default)."""
    path, _, function = entrypoint.rpartition(":")
    source = project / path
    if source.is_file():
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == function:
                for decorator in node.decorator_list:
                    for kw in decorator.keywords if isinstance(decorator, ast.Call) else []:
                        if kw.arg == "name" and isinstance(kw.value, ast.Constant):
                            return str(kw.value.value)
    return function.replace("_", "-")


class Doctor:
    """Runs every probe once; `run()` returns the checks in the order a responder fixes them."""

    def __init__(
        self, settings: Settings, *, identities: Path, project: Path, clock: Callable[[], float] = time.time
    ) -> None:
        self.settings, self.identities, self.project, self.clock = settings, identities, project, clock
        self.expected_callback = f"{settings.intake.public_url.rstrip('/')}/webhooks/whatsapp"

    async def run(self) -> list[Check]:
        logins = await Logins.open(self.settings, self.identities)
        try:
            return [
                *await self.vault(logins),
                *await self.meta(logins),
                *await self.slack(logins),
                await self.verify_token(logins),
                await self.prefect(),
                await self.intake(),
            ]
        finally:
            logins.close()

    # ---- Vault ---------------------------------------------------------------------------------

    async def vault(self, logins: Logins) -> list[Check]:
        if "playbook" not in logins.clients:
            why = logins.problems["playbook"]
            return [
                checks.vault_paths(
                    {},
                    f"cannot log in as waguard-playbook ({why}); a root or operator "
                    "token would prove nothing about what a run can read",
                )
            ]
        s = self.settings
        reads: dict[str, dict[str, str | None]] = {"playbook": {}}
        for path in playbook_paths(s):
            reads["playbook"][path] = (await logins.read("playbook", path))[1]
        signer: Identity = "evidence" if "evidence" in logins.clients else "playbook"
        client = logins.clients[signer]
        reads.setdefault(signer, {})[f"transit key {s.vault.evidence_key}"] = await _probe(
            client.public_keys(s.vault.evidence_key)
        )
        if s.evidence.encrypt:
            reads[signer][f"transit key {s.evidence.encryption_key}"] = await _probe(
                client.generate_data_key(s.evidence.encryption_key)
            )
        return [checks.vault_paths(reads, None)]

    # ---- Meta: GETs only -----------------------------------------------------------------------

    async def meta(self, logins: Logins) -> list[Check]:
        s = self.settings
        registry = load_registry(s.runbooks_dir, s)
        wabas = [w.waba_id for b in registry.businesses for w in b.wabas]
        businesses = [b.business_id for b in registry.businesses]
        needed = set(checks.PLAYBOOK_SCOPES)
        for business in registry.businesses:
            for waba in business.wabas:
                needed |= {sc for t in waba.tokens if t.path == s.meta.token_path for sc in t.scopes}
        margin = load_hygiene_policy(s.runbooks_dir, s.meta.waba_id).tokens.expiry_margin_days
        token, problem = await logins.read("playbook", s.meta.token_path)
        app_secret, secret_problem = await logins.read("playbook", s.meta.app_secret_path)
        info: TokenInfo | None = None
        proof_refused = token_refused = False
        per_waba: dict[str, Any] = {w: "not read" for w in wabas}
        app_hooks: Any = "not read"
        if token is not None and (app_secret is not None or not s.meta.appsecret_proof):
            async with self._graph(token, app_secret if s.meta.appsecret_proof else None) as graph:
                try:
                    info = await graph.debug_token(token)
                except MetaError as err:
                    problem, proof_refused = _why(err), PROOF_REFUSED in (err.message or "")
                    token_refused = isinstance(err, MetaTokenInvalid)
                if info is not None:
                    for waba_id in wabas:
                        per_waba[waba_id] = await _probe(graph.list_subscribed_apps(waba_id), keep=True)
            if app_secret is not None:
                app_token = SecretStr(f"{s.meta.app_id}|{app_secret.get_secret_value()}")
                async with self._graph(app_token, None) as app_graph:
                    app_hooks = await _probe(app_graph.list_app_subscriptions(s.meta.app_id), keep=True)
        else:
            problem = problem or f"the app secret: {secret_problem}"
        token_path = s.meta.token_path
        return [
            checks.token_valid(info, problem, token_refused, token_path),
            checks.token_expiry(info, self.clock(), margin, token_path),
            checks.token_scopes(info, sorted(needed)),
            checks.token_wabas(info, wabas, businesses),
            checks.appsecret_proof(
                None if info is not None else problem, proof_refused, s.meta.app_secret_path
            ),
            checks.subscriptions(s.meta.app_id, self.expected_callback, per_waba, app_hooks),
        ]

    def _graph(self, token: SecretStr, app_secret: SecretStr | None) -> GraphClient:
        meta = self.settings.meta
        return GraphClient(
            base_url=meta.graph_url,
            version=meta.graph_version,
            token=token,
            app_secret=app_secret,
            timeout_s=meta.timeout_s,
            max_retries=0,
        )

    # ---- Slack: auth.test and conversations.info only --------------------------------------------

    async def slack(self, logins: Logins) -> list[Check]:
        from waguard.slack.client import SlackClient

        s = self.settings.slack
        signing = checks.signing_secret(
            (await logins.read("intake", s.signing_secret_path))[1], s.signing_secret_path
        )
        token, problem = await logins.read("playbook", s.bot_token_path)
        if token is None:
            return [checks.slack_bot(f"the bot token at {s.bot_token_path}: {problem}", {}), signing]
        client = SlackClient.from_settings(s, token)
        members: dict[str, bool | str] = {}
        problem = await _probe(client.auth_test())
        if problem is None:
            for channel in dict.fromkeys((s.channel, s.escalation_channel)):
                members[channel] = await _probe(client.is_member(channel), keep=True)
        return [checks.slack_bot(problem, members), signing]

    # ---- the intake ------------------------------------------------------------------------------

    async def verify_token(self, logins: Logins) -> Check:
        path = self.settings.intake.meta_verify_token_path
        url = self.expected_callback
        token, problem = await logins.read("intake", path)
        if token is None:
            return checks.verify_handshake(url, f"the verify token at {path}: {problem}", None, False, path)
        challenge = secrets.token_hex(8)
        params = {
            "hub.mode": "subscribe",
            "hub.verify_token": token.get_secret_value(),
            "hub.challenge": challenge,
        }
        try:
            async with httpx.AsyncClient(timeout=self.settings.meta.timeout_s) as http:
                r = await http.get(url, params=params)
        except httpx.HTTPError as err:
            return checks.verify_handshake(url, type(err).__name__, None, False, path)
        return checks.verify_handshake(url, None, r.status_code, r.text == challenge, path)

    async def intake(self) -> Check:
        listen = self.settings.intake.metrics_listen
        base = f"http://{listen}" if listen else self.settings.intake.public_url.rstrip("/")
        url = f"{base}/readyz"
        try:
            async with httpx.AsyncClient(timeout=self.settings.meta.timeout_s) as http:
                r = await http.get(url)
        except httpx.HTTPError as err:
            return checks.intake(url, type(err).__name__, None)
        return checks.intake(url, None, r.status_code)

    # ---- Prefect ---------------------------------------------------------------------------------

    async def prefect(self) -> Check:
        from prefect.client.orchestration import PrefectClient
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterName,
            FlowFilter,
            FlowFilterId,
            FlowFilterName,
        )

        api = self.settings.prefect.api_url
        names = deployment_names(self.project)
        try:
            async with PrefectClient(api) as client:
                found = await client.read_deployments(
                    flow_filter=FlowFilter(name=FlowFilterName(any_=[n.split("/")[0] for n in names])),
                    deployment_filter=DeploymentFilter(
                        name=DeploymentFilterName(any_=[n.split("/", 1)[1] for n in names])
                    ),
                )
                flows = {f.id: f.name for f in await client.read_flows(
                    flow_filter=FlowFilter(id=FlowFilterId(any_=[d.flow_id for d in found])))}
        except Exception as err:  # noqa: BLE001 - an unreachable API is a verdict
            return checks.deployments({}, type(err).__name__, api)
        status = {
            f"{flows.get(d.flow_id)}/{d.name}": (d.status.value if d.status else "NOT_READY") for d in found
        }
        return checks.deployments({n: status.get(n) for n in names}, None, api)


async def _probe(call: Any, *, keep: bool = False) -> Any:
    """Await a read: None (or, with `keep`, its result) when it worked, else why it failed."""
    try:
        result = await call
    except Exception as err:  # noqa: BLE001
        return _why(err)
    return result if keep else None


def diagnose(settings: Settings, *, identities: Path, project: Path) -> list[Check]:
    """Every check, in order. Blocking (runs its own event loop)."""
    return asyncio.run(Doctor(settings, identities=identities, project=project).run())


def render(results: Sequence[Check], *, as_json: bool) -> str:
    if as_json:
        return json.dumps(
            {"ok": all(c.ok for c in results), "checks": [c.as_json() for c in results]}, indent=2
        )
    width = max(len(c.name) for c in results)
    lines = []
    for c in results:
        lines.append(f"{'PASS' if c.ok else 'FAIL'}  {c.name:<{width}}  {c.detail}")
        if not c.ok:
            lines.append(f"      {'':<{width}}  fix: {c.fix}")
    failures = sum(not c.ok for c in results)
    lines.append(f"\n{len(results) - failures} passed, {failures} failed")
    return "\n".join(lines)
