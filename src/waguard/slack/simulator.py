"""A Slack Web API simulator: the five methods waguard calls, served as a real HTTP app.

Drills and tests point slack_sdk's real `AsyncWebClient` at it (`base_url=http://host:port/api/`).
It answers the way Slack does: HTTP 200 with `{"ok": false, "error": ...}` for API errors, HTTP 429
with `Retry-After` when a rate limit is injected, form or JSON bodies, a Bearer token (or a `token`
argument) checked on every call.

    POST /api/auth.test                  who the token is
    POST /api/chat.postMessage           channel, text, blocks, thread_ts
    POST /api/chat.update                channel, ts, text, blocks (absent fields are kept)
    GET|POST /api/conversations.replies  channel, ts, limit, cursor; the parent heads every page
    GET|POST /api/conversations.info     channel; `channel.is_member` says whether the bot is in it

Admin routes under `/_sim/` (no token; the simulator binds to loopback):

    GET    /_sim/messages[?channel=C]    per channel, top-level messages with `replies` nested
    DELETE /_sim/messages                forget every message
    GET    /_sim/requests[?method=m]     the request record (never a token)
    DELETE /_sim/requests                forget the record
    POST   /_sim/ratelimit               {"count": N, "retry_after": S, "method": optional}
    POST   /_sim/channels                {"id": "C...", "member": true} makes a channel exist (the bot
                                         in it unless member is false: its posts there are not_in_channel)
    POST   /_sim/reset                   messages, record and pending 429s
    GET    /_sim/health                  {"ok": true}

Stricter than Slack on purpose: blocks are checked against Block Kit limits (`invalid_blocks`), and a
reply to an unknown ts or to a reply is refused (`thread_not_found`) where Slack would lose it.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from waguard.slack import limits
from waguard.slack.sim_state import APP_ID, BOT_ID, BOT_USER_ID, SimState, ts_key

Args = dict[str, Any]
Answer = tuple[int, dict[str, Any]]

MAX_REPLIES_LIMIT = 1000


def create_app(*, bot_tokens: set[str], team_id: str = "T0WAGUARD", clock: Callable[[], float] | None = None,
               channels: Iterable[str] = ()) -> Starlette:
    """The simulator as a Starlette app; its state is `app.state.sim` (a SimState).

    Args:
        bot_tokens: tokens the simulator accepts (kept only as SHA-256 digests).
        team_id: the workspace id auth.test reports.
        clock: Unix time source for message ts values (default time.time).
        channels: channel ids that exist besides C0INCIDENT and C0ESCALATE.
    """
    sim = SimState(bot_tokens=bot_tokens, team_id=team_id, channels=channels, clock=clock)

    async def api(request: Request) -> JSONResponse:
        method = request.path_params["method"]
        entry: dict[str, Any] = {"method": method, "http_method": request.method, "path": request.url.path,
                                 "content_type": request.headers.get("content-type")}
        status, body, headers = await _handle(sim, request, method, entry)
        entry.update(status=status, ok=bool(body.get("ok")), error=body.get("error"))
        sim.record(entry)
        return JSONResponse(body, status_code=status, headers=headers)

    app = Starlette(routes=[
        Route("/api/{method}", api, methods=["GET", "POST"]),
        *_admin_routes(sim),
    ])
    app.state.sim = sim
    return app


async def _handle(sim: SimState, request: Request, method: str,
                  entry: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    args, problem = await _read_args(request)
    # Record the arguments without the token; the Authorization header is never recorded at all.
    token = _bearer(request.headers.get("authorization")) or _str(args.pop("token", None))
    entry["args"] = args
    entry["auth"] = check = sim.check_token(token)
    if method not in _HANDLERS:
        return 404, {"ok": False, "error": "unknown_method", "req_method": method}, {}
    if check != "valid":
        return 200, {"ok": False, "error": "not_authed" if check == "missing" else "invalid_auth"}, {}
    retry_after = sim.take_rate_limit(method)
    if retry_after is not None:
        return 429, {"ok": False, "error": "ratelimited"}, {"Retry-After": str(retry_after)}
    if problem:
        return 200, {"ok": False, "error": problem}, {}
    status, body = _HANDLERS[method](sim, args)
    return status, body, {}


async def _read_args(request: Request) -> tuple[Args, str | None]:
    """Query arguments merged with a JSON or form body, as slack_sdk sends them."""
    args: Args = dict(request.query_params)
    raw = await request.body()
    if not raw:
        return args, None
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return args, "invalid_json"
        if not isinstance(data, dict):
            return args, "invalid_json"
        return {**args, **data}, None
    if ctype == "application/x-www-form-urlencoded":
        try:
            pairs = parse_qsl(raw.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return args, "invalid_form_data"
        return {**args, **dict(pairs)}, None
    return args, "invalid_form_data"


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def _str(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _blocks(args: Args) -> tuple[list[Any] | None, dict[str, Any] | None]:
    """The `blocks` argument (a list, or a JSON string in a form body); or an error answer."""
    blocks = args.get("blocks")
    if blocks is None:
        return None, None
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except json.JSONDecodeError:
            return None, {"ok": False, "error": "invalid_blocks_format"}
    found = limits.problems(blocks)
    if found:
        return None, {"ok": False, "error": "invalid_blocks", "errors": found,
                      "response_metadata": {"messages": [f"[ERROR] {p}" for p in found]}}
    return blocks, None


def _message_fields(args: Args, *, require: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    blocks, bad = _blocks(args)
    if bad:
        return {}, bad
    text = args.get("text")
    if text is not None and not isinstance(text, str):
        return {}, {"ok": False, "error": "invalid_arguments"}
    if require and not text and not blocks:
        return {}, {"ok": False, "error": "no_text"}
    if text is not None and len(text) > limits.MESSAGE_TEXT:
        return {}, {"ok": False, "error": "msg_too_long"}
    fields: dict[str, Any] = {}
    if text is not None:
        fields["text"] = text
    if blocks is not None:
        fields["blocks"] = blocks
    return fields, None


def _public(message: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in message.items() if k != "replies"}


def _auth_test(sim: SimState, args: Args) -> Answer:
    return 200, {"ok": True, "url": "https://waguard-sim.slack.com/", "team": "waguard simulator",
                 "user": "waguard", "team_id": sim.team_id, "user_id": BOT_USER_ID, "bot_id": BOT_ID,
                 "app_id": APP_ID, "is_enterprise_install": False}


def _post_message(sim: SimState, args: Args) -> Answer:
    channel = _str(args.get("channel"))
    if channel is None or not sim.has_channel(channel):
        return 200, {"ok": False, "error": "channel_not_found"}
    if not sim.is_member(channel):
        return 200, {"ok": False, "error": "not_in_channel"}
    fields, bad = _message_fields(args, require=True)
    if bad:
        return 200, bad
    try:
        message = sim.post(channel, fields, thread_ts=_str(args.get("thread_ts")))
    except KeyError as e:
        return 200, {"ok": False, "error": e.args[0]}
    return 200, {"ok": True, "channel": channel, "ts": message["ts"], "message": _public(message)}


def _update(sim: SimState, args: Args) -> Answer:
    channel, ts = _str(args.get("channel")), _str(args.get("ts"))
    if channel is None or not sim.has_channel(channel):
        return 200, {"ok": False, "error": "channel_not_found"}
    if ts is None:
        return 200, {"ok": False, "error": "message_not_found"}
    fields, bad = _message_fields(args, require=True)
    if bad:
        return 200, bad
    try:
        message = sim.update(channel, ts, fields)
    except KeyError as e:
        return 200, {"ok": False, "error": e.args[0]}
    return 200, {"ok": True, "channel": channel, "ts": ts, "text": message.get("text", ""),
                 "message": _public(message)}


def _encode_cursor(after_ts: str) -> str:
    return base64.urlsafe_b64encode(f"after:{after_ts}".encode()).decode()


def _decode_cursor(cursor: str) -> str | None:
    try:
        text = base64.urlsafe_b64decode(cursor.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return text.removeprefix("after:") if text.startswith("after:") else None


def _replies(sim: SimState, args: Args) -> Answer:
    channel, ts = _str(args.get("channel")), _str(args.get("ts"))
    if channel is None or not sim.has_channel(channel):
        return 200, {"ok": False, "error": "channel_not_found"}
    if ts is None:
        return 200, {"ok": False, "error": "thread_not_found"}
    try:
        limit = int(args.get("limit") or MAX_REPLIES_LIMIT)
    except (TypeError, ValueError):
        return 200, {"ok": False, "error": "invalid_limit"}
    limit = min(max(limit, 1), MAX_REPLIES_LIMIT)
    try:
        parent, *replies = sim.thread(channel, ts)
    except KeyError as e:
        return 200, {"ok": False, "error": e.args[0]}
    cursor = _str(args.get("cursor"))
    if cursor is not None:
        after = _decode_cursor(cursor)
        if after is None:
            return 200, {"ok": False, "error": "invalid_cursor"}
        try:
            replies = [r for r in replies if ts_key(r["ts"]) > ts_key(after)]
        except ValueError:
            return 200, {"ok": False, "error": "invalid_cursor"}
    per_page = max(limit - 1, 1)  # the parent takes one slot; always make progress
    page, rest = replies[:per_page], replies[per_page:]
    body: dict[str, Any] = {"ok": True, "messages": [parent, *page], "has_more": bool(rest)}
    body["response_metadata"] = {"next_cursor": _encode_cursor(page[-1]["ts"]) if rest else ""}
    return 200, body


def _info(sim: SimState, args: Args) -> Answer:
    channel = _str(args.get("channel"))
    if channel is None or not sim.has_channel(channel):
        return 200, {"ok": False, "error": "channel_not_found"}
    return 200, {"ok": True, "channel": {"id": channel, "name": channel.lower(), "is_channel": True,
                                         "is_archived": False, "is_member": sim.is_member(channel)}}


_HANDLERS: dict[str, Callable[[SimState, Args], Answer]] = {
    "auth.test": _auth_test,
    "chat.postMessage": _post_message,
    "chat.update": _update,
    "conversations.replies": _replies,
    "conversations.info": _info,
}


def _admin_routes(sim: SimState) -> list[Route]:
    async def messages(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            sim.clear_messages()
            return JSONResponse({"ok": True})
        channel = request.query_params.get("channel")
        if channel is not None and not sim.has_channel(channel):
            return JSONResponse({"ok": False, "error": "channel_not_found"}, status_code=404)
        return JSONResponse({"ok": True, "channels": sim.messages(channel)})

    async def requests(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            sim.reset_requests()
            return JSONResponse({"ok": True})
        return JSONResponse({"ok": True, "requests": sim.requests(request.query_params.get("method"))})

    async def ratelimit(request: Request) -> JSONResponse:
        try:
            spec = json.loads(await request.body() or b"{}")
            count, retry_after = spec.get("count", 1), spec.get("retry_after", 1)
            method = spec.get("method")
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in (count, retry_after)) or (
                    method is not None and not isinstance(method, str)):
                raise ValueError("count and retry_after must be integers, method a string")
            sim.rate_limit(count, retry_after, method)
        except (ValueError, AttributeError) as e:
            return JSONResponse({"ok": False, "error": "invalid_arguments", "detail": str(e)[:200]},
                                status_code=400)
        return JSONResponse({"ok": True})

    async def channels(request: Request) -> JSONResponse:
        try:
            spec = json.loads(await request.body())
            channel, member = spec.get("id"), spec.get("member", True)
        except (ValueError, AttributeError):
            channel, member = None, True
        if not isinstance(channel, str) or not channel or not isinstance(member, bool):
            return JSONResponse({"ok": False, "error": "invalid_arguments"}, status_code=400)
        sim.add_channel(channel, member=member)
        return JSONResponse({"ok": True})

    async def reset(request: Request) -> JSONResponse:
        sim.reset()
        return JSONResponse({"ok": True})

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    return [
        Route("/_sim/messages", messages, methods=["GET", "DELETE"]),
        Route("/_sim/requests", requests, methods=["GET", "DELETE"]),
        Route("/_sim/ratelimit", ratelimit, methods=["POST"]),
        Route("/_sim/channels", channels, methods=["POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/health", health, methods=["GET"]),
    ]
