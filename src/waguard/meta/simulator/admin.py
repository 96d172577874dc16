"""The simulator's admin API under /_sim/ (no version, no auth: it listens on loopback only).

    GET    /_sim/health                      {"ok": true}
    GET    /_sim/state                       the whole state, secrets masked
    POST   /_sim/seed                        replace the state with a Seed (JSON body)
    POST   /_sim/app/reset-secret[?app_id=]  the dashboard-only reset: {"app_secret": <new>}; the old
                                             secret stops working at once (proofs, app tokens, webhooks)
    POST   /_sim/app/require-proof           {"enabled": bool}: the 'Require App Secret' switch
    GET    /_sim/tokens                      {"tokens": [...]}: ids, owners, scopes, validity; never values
    POST   /_sim/tokens                      {"user_id", "scopes"?, "type"?, "lifetime_s"?}
                                             -> {"id", "access_token"}
    POST   /_sim/tokens/revoke               {"token_id"}: revoke in the Business Settings UI
    GET    /_sim/phone_numbers/{id}/pin      {"pin": ...}: the one place a PIN is readable
    GET|POST|DELETE /_sim/faults             {"faults": [...]}; inject {"kind", "count"|"seconds", ...}; clear
    GET|DELETE /_sim/requests                {"requests": [...], "dropped": n}: the record (secrets masked)
    GET|POST /_sim/clock                     {"now"}; POST {"advance_s": s} moves the BUILT-IN clock
                                             only: with an injected clock it answers 409
    POST   /_sim/webhooks/deliver            sign and POST a webhook (see `deliver_webhook`)

Explicitly secret-returning endpoints: reset-secret, POST /_sim/tokens and the PIN read. Everything
else masks secrets.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from waguard.meta.simulator import webhooks
from waguard.meta.simulator.faults import FaultSpec
from waguard.meta.simulator.seed import Seed
from waguard.meta.simulator.state import SimState


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequireProof(_Body):
    """Body of POST /_sim/app/require-proof."""

    enabled: bool


class Revoke(_Body):
    """Body of POST /_sim/tokens/revoke."""

    token_id: str


class IssueToken(_Body):
    """Body of POST /_sim/tokens."""

    user_id: str
    scopes: list[str] = Field(
        default_factory=lambda: [
            "whatsapp_business_management", "whatsapp_business_messaging", "business_management",
        ]
    )  # fmt: skip
    type: Literal["SYSTEM_USER", "USER"] = "SYSTEM_USER"
    lifetime_s: float | None = Field(None, gt=0)


class Advance(_Body):
    """Body of POST /_sim/clock."""

    advance_s: float = Field(ge=0)


class Deliver(_Body):
    """Body of POST /_sim/webhooks/deliver.

    `payload` is serialised as Meta does (`webhooks.encode`); `raw_body` sends exact text instead.
    `signature`: `valid` (current app secret), `previous_secret` (the secret before the last reset,
    what an attacker holding the leaked secret would sign with), `wrong`, or `none` (no header).
    `callback_url` defaults to the app's callback.
    """

    callback_url: str | None = None
    payload: dict[str, Any] | None = None
    raw_body: str | None = None
    signature: Literal["valid", "previous_secret", "wrong", "none"] = "valid"


def _sim(request: Request) -> SimState:
    return request.app.state.sim


def _problem(status: int, message: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"error": message, **extra}, status_code=status)


def _validation(err: ValidationError) -> JSONResponse:
    # Pydantic's own messages can quote the input, which may be a secret: keep location and message only.
    problems = [{"loc": [str(p) for p in e["loc"]], "msg": e["msg"]} for e in err.errors()]
    return _problem(422, "invalid body", problems=problems)


async def _json(request: Request) -> Any:
    raw = await request.body()
    return json.loads(raw) if raw else {}


async def health(request: Request) -> JSONResponse:
    """Liveness."""
    return JSONResponse({"ok": True})


async def state(request: Request) -> JSONResponse:
    """The whole state, secrets masked."""
    return JSONResponse(_sim(request).snapshot())


async def seed(request: Request) -> JSONResponse:
    """Replace the whole state."""
    try:
        new = Seed.model_validate(await _json(request))
    except ValidationError as err:
        return _validation(err)
    except ValueError:
        return _problem(400, "body is not JSON")
    _sim(request).reset(new)
    return JSONResponse({"ok": True})


async def reset_secret(request: Request) -> JSONResponse:
    """The App Dashboard's secret reset (`?app_id=`: another business's app; default the seed's)."""
    sim = _sim(request)
    app_id = request.query_params.get("app_id")
    if app_id is not None and app_id not in sim.apps:
        return _problem(404, f"no app {app_id}")
    return JSONResponse({"app_secret": sim.reset_app_secret(app_id)})


async def require_proof(request: Request) -> JSONResponse:
    """Turn 'Require App Secret' on or off."""
    try:
        body = RequireProof.model_validate(await _json(request))
    except ValidationError as err:
        return _validation(err)
    sim = _sim(request)
    with sim.lock:
        sim.app.require_appsecret_proof = body.enabled
    return JSONResponse({"require_appsecret_proof": body.enabled})


async def tokens(request: Request) -> JSONResponse:
    """Tokens without their values."""
    sim = _sim(request)
    with sim.lock:
        now = sim.now()
        return JSONResponse({"tokens": [sim.token_view(t, now) for t in sim.tokens.values()]})


async def issue_token(request: Request) -> JSONResponse:
    """Issue a token for a user (e.g. the attacker's token of a drill); answers its value once."""
    try:
        body = IssueToken.model_validate(await _json(request))
    except ValidationError as err:
        return _validation(err)
    sim = _sim(request)
    if body.user_id not in sim.business_users and body.user_id not in sim.system_users:
        return _problem(404, f"no user {body.user_id}")
    token = sim.issue_token(body.user_id, body.scopes, token_type=body.type, lifetime_s=body.lifetime_s)
    return JSONResponse({"id": token.id, "access_token": token.value})


async def revoke_token(request: Request) -> JSONResponse:
    """Revoke a token by id."""
    try:
        body = Revoke.model_validate(await _json(request))
    except ValidationError as err:
        return _validation(err)
    if not _sim(request).revoke_token(body.token_id):
        return _problem(404, f"no token {body.token_id}")
    return JSONResponse({"revoked": body.token_id})


async def read_pin(request: Request) -> JSONResponse:
    """The two-step PIN of a number (drills check that a PIN rotation reached Meta)."""
    sim = _sim(request)
    number = sim.numbers.get(request.path_params["number_id"])
    if number is None:
        return _problem(404, "no such phone number")
    return JSONResponse({"pin": number.two_step_pin})


async def faults(request: Request) -> JSONResponse:
    """GET: active faults. POST: inject one. DELETE: clear all."""
    sim = _sim(request)
    if request.method == "DELETE":
        sim.clear_faults()
        return JSONResponse({"ok": True})
    if request.method == "POST":
        try:
            spec = FaultSpec.model_validate(await _json(request))
        except ValidationError as err:
            return _validation(err)
        return JSONResponse(sim.add_fault(spec).model_dump())
    with sim.lock:
        now = sim.now()
        return JSONResponse({"faults": [f.model_dump() for f in sim.faults if not f.spent(now)]})


async def requests(request: Request) -> JSONResponse:
    """GET: the request record (optionally `?since_seq=`). DELETE: clear it."""
    sim = _sim(request)
    with sim.lock:
        if request.method == "DELETE":
            sim.log.clear()
            return JSONResponse({"ok": True})
        since = int(request.query_params.get("since_seq", "0") or 0)
        data = [e.model_dump() for e in sim.log.entries if e.seq > since]
        return JSONResponse({"requests": data, "dropped": sim.log.dropped})


async def clock(request: Request) -> JSONResponse:
    """GET: the simulator's time. POST {"advance_s"}: move the built-in clock forward."""
    sim = _sim(request)
    if request.method == "POST":
        if not sim.settable_clock:
            return _problem(409, "the simulator runs on an injected clock; advance that clock instead")
        try:
            body = Advance.model_validate(await _json(request))
        except ValidationError as err:
            return _validation(err)
        sim.advance(body.advance_s)
    return JSONResponse({"now": sim.now(), "settable": sim.settable_clock})


async def deliver_webhook(request: Request) -> JSONResponse:
    """Sign the exact body bytes with the app secret and POST them to the callback.

    Answers {"status": <callback's HTTP status or null>, "error": <transport error or null>,
    "signature": <header sent or null>, "body_sha256": <hex of the bytes sent>}.
    """
    try:
        body = Deliver.model_validate(await _json(request))
    except ValidationError as err:
        return _validation(err)
    sim = _sim(request)
    url = body.callback_url or sim.app.callback_url
    if not url:
        return _problem(400, "no callback_url given and the app has no callback_url")
    if (body.payload is None) == (body.raw_body is None):
        return _problem(400, "give exactly one of payload or raw_body")
    raw = webhooks.encode(body.payload) if body.payload is not None else str(body.raw_body).encode()
    with sim.lock:
        previous = sim.previous_secrets[-1] if sim.previous_secrets else None
        keys = {"valid": sim.app.secret, "previous_secret": previous, "wrong": "not-the-app-secret",
                "none": None}  # fmt: skip
    if body.signature == "previous_secret" and keys["previous_secret"] is None:
        return _problem(409, "the app secret was never reset: there is no previous secret")
    key = keys[body.signature]
    sig = webhooks.signature(raw, key) if key is not None else None
    status, error = await webhooks.deliver(url, raw, sig)
    return JSONResponse({"status": status, "error": error, "signature": sig,
                         "body_sha256": hashlib.sha256(raw).hexdigest()})  # fmt: skip


ROUTES = [
    Route("/_sim/health", health, methods=["GET"]),
    Route("/_sim/state", state, methods=["GET"]),
    Route("/_sim/seed", seed, methods=["POST"]),
    Route("/_sim/app/reset-secret", reset_secret, methods=["POST"]),
    Route("/_sim/app/require-proof", require_proof, methods=["POST"]),
    Route("/_sim/tokens", tokens, methods=["GET"]),
    Route("/_sim/tokens", issue_token, methods=["POST"]),
    Route("/_sim/tokens/revoke", revoke_token, methods=["POST"]),
    Route("/_sim/phone_numbers/{number_id}/pin", read_pin, methods=["GET"]),
    Route("/_sim/faults", faults, methods=["GET", "POST", "DELETE"]),
    Route("/_sim/requests", requests, methods=["GET", "DELETE"]),
    Route("/_sim/clock", clock, methods=["GET", "POST"]),
    Route("/_sim/webhooks/deliver", deliver_webhook, methods=["POST"]),
]
