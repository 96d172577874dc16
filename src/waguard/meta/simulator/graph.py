"""The Graph endpoint: routes `/{version}/{id}[/{edge}]` and `/{version}/debug_token` through Meta's checks.

Order of checks, as Graph applies them: injected fault, access token (104 / 190), appsecret_proof
(100), the object (100/33) and the edge or field (100), permissions (200), then the app and WABA
call budgets (4, 80007), then the operation itself. Every answer carries X-App-Usage,
X-Business-Use-Case-Usage, x-fb-trace-id, x-fb-request-id and facebook-api-version, and every call
is recorded with its secrets masked (see `record.py`). Error messages that would echo a secret the
simulator knows (a token pasted into a path) have it masked too.

An unversioned path (`/debug_token`) is served with the seed's default version, as Graph serves
unversioned calls with the app's default version.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from waguard.meta.simulator import access, nodes, phone, rules, templates
from waguard.meta.simulator import envelope as E
from waguard.meta.simulator.calls import NODE, ROOT, Answer, Call, Operation
from waguard.meta.simulator.record import RequestEntry
from waguard.meta.simulator.seed import TokenSeed
from waguard.meta.simulator.state import AppToken, SimState

VERSION_RE = re.compile(r"^v[0-9]+\.[0-9]+$")
ID_RE = re.compile(r"^[0-9]+$")
NODE_TYPES = {"app": "Application", "business": "Business", "waba": "WhatsAppBusinessAccount",
              "phone_number": "WhatsAppBusinessPhoneNumber", "template": "WhatsAppBusinessHSM",
              "business_user": "BusinessUser", "system_user": "SystemUser"}  # fmt: skip
OPERATIONS: dict[tuple[str, str, str], Operation] = {
    **phone.OPERATIONS, **templates.OPERATIONS, **access.OPERATIONS, **nodes.OPERATIONS,
}  # fmt: skip
SECRET_PARAMS = frozenset({"access_token", "appsecret_proof"})
PAGING_PARAMS = frozenset({"after", "before", "limit"})
STATIC_HEADERS = {  # as graph.facebook.com sends them (OAS components.headers examples)
    "Cache-Control": "private, no-cache, no-store, must-revalidate",
    "Pragma": "no-cache",
    "Expires": "Sat, 01 Jan 2000 00:00:00 GMT",
}


class _Stale(Exception):
    """A call that outlived the state it was made against (the simulator was reseeded meanwhile)."""


class _Routed:
    """What routing found out about a call, kept for the answer headers and the record."""

    def __init__(self) -> None:
        self.operation: Operation | None = None
        self.token: TokenSeed | AppToken | None = None
        self.waba_ids: list[str] = []
        self.counted = False


def _split(path: str, default_version: str) -> tuple[str, list[str]]:
    segments = [s for s in path.split("/") if s]
    if segments and VERSION_RE.match(segments[0]):
        return segments[0], segments[1:]
    if segments and re.match(r"^v[0-9]", segments[0]):
        raise E.unknown_path(path)  # a malformed version, e.g. /v23/...
    return default_version, segments


async def _params(request: Request) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(query, body) of a call; Graph reads parameters from either, the body winning."""
    query = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return query, None
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/json":
        try:
            body = json.loads(raw)
        except ValueError:
            raise E.invalid_param("(#100) The request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise E.invalid_param("(#100) The request body must be a JSON object")
        return query, body
    if content_type == "application/x-www-form-urlencoded":
        return query, dict(parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True))
    return query, {}


def _authenticate(
    sim: SimState, request: Request, params: dict[str, Any], routed: _Routed, now: float
) -> None:
    value = rules.bearer(request.headers.get("authorization")) or params.get("access_token")
    if not value:
        raise E.token_missing()
    token = sim.find_token(str(value))
    if token is None:
        raise E.token_unparsable()
    routed.token = token
    if isinstance(token, TokenSeed) and (problem := sim.token_problem(token, now)):
        raise problem
    proof = params.get("appsecret_proof")
    if isinstance(token, AppToken):
        return  # an app token carries the secret itself; Meta wants no proof with it
    app = sim.app_of(token)  # the proof is keyed with the secret of the token's own app
    if proof:
        if not rules.proof_matches(str(proof), str(value), app.secret):
            raise E.proof_invalid()
    elif app.require_appsecret_proof:
        raise E.proof_missing()


def _route(sim: SimState, method: str, segments: list[str], path: str) -> tuple[Operation, str, str]:
    """(operation, object id, kind) of a call, or the error Graph answers."""
    if segments == ["debug_token"]:
        op = OPERATIONS.get((ROOT, "debug_token", method))
        if op is None:
            raise E.unsupported(method, "debug_token")
        return op, "", ROOT
    if not segments or len(segments) > 2 or not ID_RE.match(segments[0]):
        raise E.unknown_path(path)
    object_id, edge = segments[0], (segments[1] if len(segments) == 2 else NODE)
    kind = sim.kind_of(object_id)
    if kind is None:
        raise E.unsupported(method, object_id)
    op = OPERATIONS.get((kind, edge, method))
    if op is None:
        if method == "GET" and edge:
            raise E.nonexisting_field(edge, NODE_TYPES[kind])
        raise E.unsupported(method, object_id)
    return op, object_id, kind


def _authorise(sim: SimState, op: Operation, token: TokenSeed | AppToken, waba_id: str | None,
               business_id: str, has_proof: bool) -> None:  # fmt: skip
    if op.proof and not has_proof:
        raise E.proof_missing()
    if isinstance(token, AppToken):
        if not op.app_token:
            raise E.permission()
        return
    if op.scope is None:
        return  # not a business asset (debug_token, the app node): any valid token of the app will do
    if op.scope not in token.scopes:
        raise E.permission(op.scope)
    target = waba_id or business_id
    granted = [g for g in token.granular_scopes if g.scope == op.scope]
    if granted and all(g.target_ids and target not in g.target_ids for g in granted):
        raise E.permission()
    # The token acts for its user: that user must still belong to the object's business (another
    # business's people are strangers there) and reach the WABA.
    user_id = token.user_id
    if not sim.is_member(user_id, business_id):
        raise E.permission()
    if waba_id is not None and not sim.can_reach_waba(user_id, waba_id):
        raise E.permission()
    if op.admin and not sim.is_admin(user_id, business_id):
        raise E.permission()


def _page_url(request: Request, params: dict[str, Any]) -> str:
    keep = {k: v for k, v in params.items() if k not in SECRET_PARAMS | PAGING_PARAMS and isinstance(v, str)}
    base = str(request.url.replace(query=""))
    return base + ("?" + urlencode(keep) if keep else "")


async def _fault(
    sim: SimState, path: str, unversioned: str, now: float
) -> tuple[E.GraphError | None, str | None]:
    """(error to answer, fault kind) for this call; a latency fault waits here and answers no error."""
    with sim.lock:
        fault = sim.take_fault(path, unversioned, now)
    if fault is None:
        return None, None
    kind = fault.spec.kind
    if kind == "latency":
        epoch = sim.epoch
        await asyncio.sleep((fault.spec.latency_ms or 0) / 1000)
        if sim.epoch != epoch:  # reseeded meanwhile: this call belongs to a state that is gone
            raise _Stale()
        return None, kind
    errors = {"http429": E.plain_429, "http5xx": E.transient, "throttle4": E.app_throttled,
              "throttle80007": E.waba_throttled}  # fmt: skip
    return errors[kind](), kind


async def graph_endpoint(request: Request) -> Response:
    """Serve one Graph call."""
    sim: SimState = request.app.state.sim
    try:
        return await _serve(sim, request)
    except _Stale:
        return Response(status_code=503)
    except ClientDisconnect:  # the caller died mid-request (the kill-flow fault): nobody to answer
        return Response(status_code=499)


async def _serve(sim: SimState, request: Request) -> Response:
    epoch = sim.epoch
    method = request.method.upper()
    path = request.url.path
    now = sim.now()
    routed = _Routed()
    query: dict[str, Any] = dict(request.query_params)
    body: dict[str, Any] | None = None
    version = sim.default_version
    fault_kind: str | None = None
    usage: dict[str, str] = {}
    try:
        version, segments = _split(path, sim.default_version)
        # Route first so that faults and token errors get the operation's declared HTTP status;
        # a routing error is still answered in Graph's order, after the token checks.
        with sim.lock:
            try:
                op, object_id, kind = _route(sim, method, segments, path)
                routed.operation, route_error = op, None
                waba_id = sim.waba_of(kind, object_id)  # type: ignore[arg-type]
                routed.waba_ids = [waba_id] if waba_id else []
            except E.GraphError as err:
                route_error = err
        fault_error, fault_kind = await _fault(sim, path, "/" + "/".join(segments), now)
        if fault_error is not None:
            raise fault_error
        query, body = await _params(request)
        params = {**query, **(body or {})}
        with sim.lock:
            _authenticate(sim, request, params, routed, now)
            if route_error is not None:
                raise route_error
            assert routed.token is not None
            has_proof = bool(params.get("appsecret_proof"))
            _authorise(sim, op, routed.token, waba_id, sim.business_of(kind, object_id).id,  # type: ignore[arg-type]
                       has_proof)
            routed.counted = True
            throttled, usage = sim.count_call(routed.waba_ids, now)
            if throttled:
                raise throttled
        call = Call(sim=sim, method=method, version=version, object_id=object_id, kind=kind, params=params,
                    token=routed.token, now=now, page_url=_page_url(request, params), has_proof=has_proof)
        answer: Answer = await op.handler(call)
        status, payload, error = answer.status, answer.body, None
    except E.GraphError as err:
        declared = routed.operation.declared if routed.operation else frozenset()
        status, error = E.http_status(err, declared), err
        payload = None
    trace = E.fbtrace_id()
    if error is not None:
        # Graph echoes path components in some messages; a secret pasted into a path is not echoed.
        error.message = sim.masker().text(error.message)
        payload = error.body(trace)
    if fault_kind in ("throttle4", "throttle80007", "http429"):
        usage = sim.saturated_headers(routed.waba_ids, 1)
    elif not routed.counted:
        _, usage = sim.count_call(routed.waba_ids, now, count=False)
    headers = {**usage, "x-fb-trace-id": trace, "x-fb-request-id": "A" + secrets.token_urlsafe(16)[:21],
               "facebook-api-version": version, "x-fb-rev": "1019544279", **STATIC_HEADERS}
    if sim.epoch == epoch:
        _record(sim, now, method, path, query, body, routed, status, error, fault_kind, trace)
    return Response(json.dumps(payload, separators=(",", ":")), status_code=status, headers=headers,
                    media_type="application/json; charset=UTF-8")  # fmt: skip


def _record(
    sim: SimState, now: float, method: str, path: str, query: dict[str, Any], body: dict[str, Any] | None,
    routed: _Routed, status: int, error: E.GraphError | None, fault: str | None, trace: str,
) -> None:
    masker = sim.masker()
    with sim.lock:
        sim.log.add(RequestEntry(
            seq=sim.log.next_seq(), time=now, method=method, path=masker.text(path),
            operation=routed.operation.name if routed.operation else None,
            query=masker.params(query), body=masker.params(body) if body is not None else None,
            body_keys=sorted(masker.text(str(k)) for k in (body or {})),
            token_id=routed.token.id if routed.token is not None else None, status=status,
            error_code=error.code if error else None, error_subcode=error.subcode if error else None,
            fault=fault, fbtrace_id=trace,
        ))  # fmt: skip
