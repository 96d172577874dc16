"""The intake service: verified alert webhooks start deduplicated playbook runs; Slack clicks vote.

Every delivery goes through one pipeline (style-anchors pattern 10): cap the size and check the
content type, read the raw bytes, verify them (constant time, before any parsing), parse, remember
the nonce and claim the incident in one SQLite transaction, answer, then start new runs in the
background. Each step that refuses answers with a 4xx JSON error (503 when Vault or Prefect cannot
be reached), writes one audit record and counts it; nothing refused ever starts a run.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from prometheus_client import CollectorRegistry
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route
from starlette.types import Receive, Scope

from waguard.intake import strict_json
from waguard.intake.audit import RejectionSampler, safe_id
from waguard.intake.businesses import Businesses
from waguard.intake.dispatch import Dispatched, Dispatcher
from waguard.intake.health import Readiness, ops_routes
from waguard.intake.health import create_ops_app as create_ops_app  # re-exported: server.py, tests
from waguard.intake.keys import SecretCache, SecretReader, SecretsUnavailable
from waguard.intake.metrics import IntakeMetrics
from waguard.intake.plain_asgi import IntakeApp
from waguard.intake.posture_gauges import PostureGauges
from waguard.intake.routing import ROUTING_FILE, RoutingPolicy, load_routing
from waguard.intake.slack_actions import PrefectRunDirectory, RunDirectory
from waguard.intake.slack_clicks import SlackClicks
from waguard.intake.sources import BODY_NONCES, Inbound, Interpreted, Problem, Sources
from waguard.intake.starter import RunStarter
from waguard.intake.verify import Rejected, verify_token
from waguard.playbook.policy import PLAYBOOKS, Playbook, PlaybookPolicy, load_policy
from waguard.settings import Settings
from waguard.state.backends import incident_openings, open_audit_log, open_intake_store, shared_timelines

log = logging.getLogger(__name__)
JSON_TYPES = ("application/json",)
_CHALLENGE = re.compile(r"[A-Za-z0-9_-]{1,128}")


_encode = strict_json.compact_encoder(ensure_ascii=False, allow_nan=False)


class _Json(JSONResponse):
    """Starlette's JSONResponse, its encoder built once instead of once per answer."""

    def render(self, content: Any) -> bytes:
        return _encode(content).encode("utf-8")


class IntakeService:
    """Everything one intake app holds; `app.state.intake` in the Starlette app."""

    def __init__(self, settings: Settings, vault: SecretReader, starter: RunStarter,
                 clock: Callable[[], float], *, runs: RunDirectory, routing: RoutingPolicy,
                 policies: dict[Playbook, PlaybookPolicy], registry: CollectorRegistry | None = None) -> None:
        self.settings = settings
        self.clock = clock
        self.routing = routing
        state = settings.intake.state_dir
        self.store = open_intake_store(settings)  # SQLite under state_dir, or WAGUARD_STATE__DSN's database
        intake = settings.intake
        self.audit = open_audit_log(settings)  # rotated files under state_dir, or the shared table
        self.rejections = RejectionSampler(intake.rejection_sample_s)
        businesses = Businesses.load(settings)  # the business registry (ConfigError: names file and key)
        self.metrics = IntakeMetrics(registry, known_wabas=businesses.wabas(),
                                     incidents_dir=settings.incidents_dir, default_waba=settings.meta.waba_id,
                                     store_path=state / "intake.sqlite3",
                                     detection_dir=settings.detection_dir,  # rules' `for:` (time to detect)
                                     opened=incident_openings(settings),  # None: read the SQLite file
                                     shared_timelines=shared_timelines(settings))  # None: the files
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.metrics.registry.register(PostureGauges(state))  # the scheduled audit's latest findings
        self.secrets = SecretCache(vault, clock)
        self.dispatcher = Dispatcher(self.store, starter, self.audit, self.metrics, clock)
        self.sources = Sources(settings, routing, self.secrets, clock, businesses)
        self.slack = SlackClicks(self, runs, policies)
        self.readiness = Readiness(vault, self.store, intake.alertmanager_token_path)

    async def aclose(self) -> None:
        """Stop background starts, write the refusals still counted, close the store and the audit log."""
        await self.dispatcher.aclose()
        self.flush_rejections(final=True)
        self.store.close()
        self.audit.close()

    def _count(self, counter: Any, *labels: str) -> None:
        """Add one to a labelled counter; each child is looked up once (labels() costs a few us)."""
        key = (id(counter), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = counter.labels(*labels)
        child.inc()

    # -- the pipeline ---------------------------------------------------------------------------

    async def receive(self, request: Request, source: str, content_types: tuple[str, ...]) -> Inbound:
        """Check size and content type, then read the raw body (never more than the limit)."""
        return await self.read(request.scope, request.receive, source, content_types)

    async def read(self, scope: Scope, receive: Receive, source: str,
                   content_types: tuple[str, ...]) -> Inbound:
        """`receive` on the plain ASGI parts (the alert webhooks are served without Starlette)."""
        # Raw ASGI headers (cheaper than Starlette's view), the first of a repeated name kept.
        headers = {name.decode("latin-1").lower(): value.decode("latin-1")
                   for name, value in reversed(scope["headers"])}
        limit = self.settings.intake.max_body_bytes
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > limit):
            raise Problem(413, "body_too_large", f"the body exceeds {limit} bytes", "rejected-input")
        ctype = headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in content_types:
            raise Problem(415, "unsupported_media_type", f"content type must be {' or '.join(content_types)}",
                          "rejected-input")
        body = bytearray()
        while True:
            message = await receive()
            if message["type"] != "http.request":
                raise Problem(400, "incomplete_body", "the client went away before the body ended",
                              "rejected-input")
            body += message.get("body", b"")
            if len(body) > limit:
                raise Problem(413, "body_too_large", f"the body exceeds {limit} bytes", "rejected-input")
            if not message.get("more_body", False):
                break
        return Inbound(source, bytes(body), headers)

    def rejected(self, d: Inbound, err: Rejected, request: Request | None = None) -> Problem:
        """Count a failed verification (a detection signal) and turn it into a 401 (logged, sampled,
        when it is answered)."""
        d.verification = f"failed:{err.reason}"
        self.metrics.signature_failures.labels(d.source, err.reason).inc()
        return Problem(401, "unauthorized", str(err), "rejected-signature")

    def answer(self, source: str, d: Inbound | None, status: int, outcome: str, body: dict[str, Any],
               client: str | None = None, **audit: Any) -> JSONResponse:
        """Write the audit record (refusals: sampled) and the delivery metric, and build the JSON answer."""
        return _Json(self.record(source, d, status, outcome, body, client, **audit), status_code=status)

    def record(self, source: str, d: Inbound | None, status: int, outcome: str, body: dict[str, Any],
               client: str | None = None, **audit: Any) -> dict[str, Any]:
        """`answer`'s audit record and metric; returns `body`."""
        self._count(self.metrics.deliveries, source, outcome)
        verification = d.verification if d else "not-checked"
        now = self.clock()
        if status >= 400:
            kind = (source, client or "?", status, str(audit.get("note") or outcome), verification)
            repeats = self.rejections.admit(kind, now)
            if repeats is None:  # counted; written with the next record of its kind
                return body
            audit.update(client=client, repeats=repeats or None)
            if outcome == "rejected-signature":
                level = logging.ERROR if verification == "failed:no-secret" else logging.WARNING
                log.log(level, "intake: %s delivery failed verification (%s) from %s, body sha256 %s "
                        "(%d more like it since the last report)", source, verification, client or "?",
                        d.sha256[:16] if d else "-", repeats)
        self.audit.write(at=now, source=source, outcome=outcome, status=status, verification=verification,
                         body_sha256=d.sha256 if d else None,
                         delivery_id=safe_id(d.delivery_id) if d else None,
                         **audit)
        return body

    def problem(self, source: str, d: Inbound | None, p: Problem, client: str | None = None,
                **audit: Any) -> JSONResponse:
        return _Json(self.refusal(source, d, p, client, **audit), status_code=p.status)

    def refusal(self, source: str, d: Inbound | None, p: Problem, client: str | None = None,
                **audit: Any) -> dict[str, Any]:
        return self.record(source, d, p.status, p.outcome, {"error": p.code, "message": str(p)},
                           client=client, note=p.code, **audit)

    def flush_rejections(self, *, final: bool = False) -> None:
        """Write a summary record for each kind of refusal whose period ended with repeats unwritten."""
        now = self.clock()
        for (source, client, status, reason, verification), repeats in (
                self.rejections.drain() if final else self.rejections.due(now)):
            self.audit.write(
                at=now,
                source=source,
                outcome="repeats",
                status=status,
                verification=verification,
                body_sha256=None,
                client=client,
                note=reason,
                repeats=repeats,
            )
            if verification.startswith("failed:"):
                log.warning("intake: %d more %s deliveries failed verification (%s) from %s",
                            repeats, source, verification, client)

    async def deliver(self, request: Request, source: str) -> Response:
        """The alert pipeline shared by Alertmanager, GitHub, Grafana and Meta."""
        status, body = await self.take(request.scope, request.receive, source)
        return _Json(body, status_code=status)

    async def verify(self, d: Inbound, source: str) -> str:
        """The source's check, once more on a fresh read if it failed on an old one (a rotated secret)."""
        check = self.sources.verifier(source)
        try:
            return await check(d)
        except Rejected as err:
            if err.reason not in ("mismatch", "no-secret") or not self.secrets.refresh_stale():
                raise self.rejected(d, err) from None
        try:
            return await check(d)
        except Rejected as err:
            raise self.rejected(d, err) from None

    async def take(self, scope: Scope, receive: Receive, source: str) -> tuple[int, dict[str, Any]]:
        """`deliver` on the plain ASGI parts: the answer's status and JSON body."""
        d: Inbound | None = None
        try:
            d = await self.read(scope, receive, source, JSON_TYPES)
            d.verification = await self.verify(d, source)
            if source in BODY_NONCES and self.store.is_live(f"{source}:{d.sha256}", now=self.clock()):
                await self.store.group()  # answered once what it repeats is durable (it may be in this turn)
                return self._duplicate(source, d)  # a replayed body costs no parse
            try:  # depth-checked before parsing, duplicate keys refused (strict_json)
                payload = strict_json.loads(d.body)
            except strict_json.BadJson as err:
                raise Problem(400, err.reason, str(err), "rejected-input") from None
            try:
                got = await self.sources.interpreter(source)(d, payload)
            except Rejected as err:  # a Meta delivery signed by one app about another app's WABA
                raise self.rejected(d, err) from None
            await self.dispatcher.retire_ended(got.route, now=self.clock())
            now = self.clock()
            committed = self.store.group()  # shared with the deliveries of this loop turn
            with self.store.transaction():
                fresh = self.store.remember(f"{source}:{got.nonce}", now=now,
                                            ttl_s=self.settings.intake.replay_ttl_s)
                done = self._dispatch(source, got, now) if fresh else Dispatched([], [])
            # Answered only once durable (a duplicate too: what it duplicates may be in this group).
            await committed
        except Problem as p:
            return p.status, self.refusal(source, d, p, client=_peer(scope))
        except SecretsUnavailable:
            return 503, self.refusal(source, d, Problem(
                503, "unavailable", "the delivery cannot be taken now; retry", "unavailable"),
                client=_peer(scope))
        if not fresh:
            return self._duplicate(source, d)
        if got.meta is not None:  # verified and first seen: a detection signal (detection/metrics.md)
            self.metrics.meta.observe(got.meta)
        self.dispatcher.launch(done)
        joined = done.joined
        for j in joined:
            if j.outcome == "joined":
                self._count(self.metrics.duplicates, source, "incident")
            elif j.outcome == "started":  # time to detect, once per incident (response_times.py)
                self.metrics.response.detected(j.playbook, source, payload, now)
        outcome = ("started" if any(j.outcome == "started" for j in joined)
                   else "joined" if joined else "recorded")
        incidents = [{"incident_key": j.incident_id, "playbook": j.playbook, "outcome": j.outcome,
                      "run_id": j.run_id} for j in joined]
        first = joined[0] if joined else None
        return 200, self.record(source, d, 200, outcome,
                                {"outcome": outcome, "incidents": incidents, "notes": list(got.route.notes)},
                                incident_key=first.incident_id if first else None,
                                run_id=first.run_id if first else None,
                                incidents=incidents if len(incidents) > 1 else None,
                                closed=list(got.route.closes) or None,
                                note="; ".join(got.route.notes) or None)

    def _duplicate(self, source: str, d: Inbound) -> tuple[int, dict[str, Any]]:
        self._count(self.metrics.duplicates, source, "replay")
        return 200, self.record(source, d, 200, "duplicate", {"outcome": "duplicate"})

    def _dispatch(self, source: str, got: Interpreted, now: float) -> Dispatched:
        try:
            return self.dispatcher.dispatch(source, got.route, now=now, quiet_s=got.quiet_s)
        except ValidationError:
            # The route's parameters failed the playbook's model (a label/policy problem); the
            # transaction rolls back, so a corrected retry is not taken for a replay.
            raise Problem(422, "unroutable", "the alert's parameters are invalid for the playbook",
                          "rejected-input") from None

    async def meta_handshake(self, request: Request) -> Response:
        """Meta's GET verification: echo hub.challenge only when hub.verify_token matches."""
        q = request.query_params
        d = Inbound("meta", b"", {})
        try:
            if q.get("hub.mode") != "subscribe":
                raise Problem(400, "bad_handshake", "hub.mode must be subscribe", "rejected-input")
            challenge = q.get("hub.challenge", "")
            if not _CHALLENGE.fullmatch(challenge):
                raise Problem(400, "bad_handshake", "hub.challenge is missing or malformed", "rejected-input")
            tokens = await self.secrets.values(self.settings.intake.meta_verify_token_path)
            try:
                verify_token(tokens, q.get("hub.verify_token"))
            except Rejected as err:
                d.verification = f"failed:{err.reason}"
                self.metrics.signature_failures.labels("meta", f"verify-token-{err.reason}").inc()
                raise Problem(403, "forbidden", "the verify token does not match",
                              "rejected-signature") from None
        except Problem as p:
            return self.problem("meta", d, p, client=_client(request))
        except SecretsUnavailable:
            return self.problem("meta", d, Problem(503, "unavailable", "retry later", "unavailable"),
                                client=_client(request))
        d.verification = "ok"
        self.answer("meta", d, 200, "handshake", {})
        return PlainTextResponse(challenge)


async def _flush_every(service: IntakeService, period_s: float) -> None:
    """Write the refusal counts of ended periods even when no further refusal comes to carry them."""
    while True:
        await asyncio.sleep(period_s)
        service.flush_rejections()


def _client(request: Request) -> str:
    return _peer(request.scope)


def _peer(scope: Scope) -> str:
    client = scope.get("client")
    return client[0] if client else "?"


def load_policies(runbooks_dir: Any) -> dict[Playbook, PlaybookPolicy]:
    """Every playbook's policy (validated at start; a bad file stops the service from starting)."""
    return {p: load_policy(runbooks_dir, p) for p in PLAYBOOKS}


def create_app(settings: Settings, vault: SecretReader, starter: RunStarter,
               clock: Callable[[], float] = time.time, *, runs: RunDirectory | None = None,
               routing: RoutingPolicy | None = None, registry: CollectorRegistry | None = None) -> Starlette:
    """Build the intake ASGI app.

    Args:
        settings: waguard settings (intake paths and limits, Vault paths, runbooks_dir).
        vault: where secrets are read (a VaultClient).
        starter: how runs are started (PrefectRunStarter in service; RecordingStarter in tests).
        clock: Unix time in seconds (signature windows, TTLs, the rotation window, audit times).
        runs: where Slack votes go (default: Prefect via PREFECT_API_URL).
        routing: the routing policy (default: `<runbooks_dir>/routing.yaml`, validated now).
        registry: the Prometheus registry (default: a fresh one per app).

    Raises ConfigError when the routing policy or a playbook policy is invalid.
    """
    routing = routing or load_routing(settings.runbooks_dir / ROUTING_FILE, settings.runbooks_dir)
    policies = load_policies(settings.runbooks_dir)
    service = IntakeService(settings, vault, starter, clock, runs=runs or PrefectRunDirectory(),
                            routing=routing, policies=policies, registry=registry)

    def source(name: str) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            return await service.deliver(request, name)
        return endpoint

    async def http_error(request: Request, exc: Exception) -> Response:
        status = exc.status_code if isinstance(exc, HTTPException) else 500
        if status >= 500:
            log.error("intake: unexpected error on %s %s: %s", request.method, request.url.path,
                      type(exc).__name__)
        return JSONResponse({"error": "not_found" if status == 404 else "method_not_allowed"
                             if status == 405 else "error"}, status_code=status)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        resumed = service.dispatcher.resume_pending()
        if resumed:
            log.info("intake: resuming %d run start(s) left pending", resumed)
        flusher = asyncio.create_task(_flush_every(service, settings.intake.rejection_sample_s))
        # What the imports and the policies built lives as long as the process: out of the collector's
        # sight, a full collection no longer walks those ~150k objects (about 100 ms, a p99 spike).
        gc.freeze()
        yield
        flusher.cancel()
        await service.aclose()

    webhooks = {"/alerts/alertmanager": "alertmanager", "/alerts/github": "github",
                "/alerts/grafana": "grafana", "/webhooks/whatsapp": "meta"}
    app = IntakeApp(webhooks={path: functools.partial(service.take, source=name)
                              for path, name in webhooks.items()}, encode=_encode, routes=[
        *(Route(path, source(name), methods=["POST"]) for path, name in webhooks.items()),  # a root_path
        Route("/webhooks/whatsapp", service.meta_handshake, methods=["GET"]),
        Route("/slack/interactions", service.slack.handle, methods=["POST"]),
        *ops_routes(service, metrics=not settings.intake.metrics_listen),
    ], exception_handlers={HTTPException: http_error, Exception: http_error}, lifespan=lifespan)
    app.state.intake = service
    return app
