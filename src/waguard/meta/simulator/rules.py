"""Meta's rules as pure functions: rolling windows, usage headers, proofs, paging, field selection.

No state and no I/O here; `state.py` and the handlers call these with values they hold.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from waguard.meta.simulator import envelope as E

HOUR_S = 3600.0
PIN_RE = re.compile(r"^[0-9]{6}$")


# ---- rolling windows ------------------------------------------------------------------------------


def in_window(times: Iterable[float], now: float, window_s: float) -> list[float]:
    """The times still inside the moving window that ends at `now`, oldest first."""
    return sorted(t for t in times if now - window_s < t <= now)


def registration_refused(attempts_in_window: int, limit: int) -> bool:
    """True when this attempt (already counted in `attempts_in_window`) is past Meta's limit.

    Meta counts requests, not successes: the 11th request in the window is refused and still counts.
    """
    return attempts_in_window > limit


def percent(used: int, budget: int) -> int:
    """Usage as Meta reports it: an integer percentage of the budget, rounded up, not capped."""
    return math.ceil(100 * used / budget) if used > 0 else 0


def regain_minutes(times_in_window: Sequence[float], now: float, budget: int, window_s: float) -> int:
    """Minutes until the window holds fewer than `budget` calls again (0 when it already does)."""
    if len(times_in_window) < budget:
        return 0
    frees_at = times_in_window[len(times_in_window) - budget] + window_s
    return max(1, math.ceil((frees_at - now) / 60))


def app_usage_header(pct: int) -> str:
    """`X-App-Usage`. The simulator has no CPU model, so cputime and time mirror call_count."""
    return json.dumps({"call_count": pct, "total_cputime": pct, "total_time": pct}, separators=(",", ":"))


def buc_header(entries: Mapping[str, tuple[int, int]]) -> str:
    """`X-Business-Use-Case-Usage` keyed by WABA id: {id: [{type, call_count, ..., regain}]}."""
    body = {
        waba: [{"type": "whatsapp_business_management", "call_count": pct, "total_cputime": pct,
                "total_time": pct, "estimated_time_to_regain_access": regain}]
        for waba, (pct, regain) in entries.items()
    }  # fmt: skip
    return json.dumps(body, separators=(",", ":"))


# ---- appsecret_proof and tokens -------------------------------------------------------------------


def appsecret_proof(token: str, app_secret: str) -> str:
    """hex(HMAC-SHA256(key=app_secret, msg=access_token))."""
    return hmac.new(app_secret.encode(), token.encode(), hashlib.sha256).hexdigest()


def proof_matches(proof: str, token: str, app_secret: str) -> bool:
    """Constant-time check of a received appsecret_proof."""
    return hmac.compare_digest(proof.lower().encode(), appsecret_proof(token, app_secret).encode())


def bearer(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer|OAuth <token>` header, or None."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() not in ("bearer", "oauth"):
        return None
    return value.strip() or None


def valid_pin(value: Any) -> bool:
    """A two-step PIN is a STRING of exactly six digits (a JSON number is refused, as the spec says)."""
    return isinstance(value, str) and bool(PIN_RE.match(value))


# ---- parameters -----------------------------------------------------------------------------------


def list_param(value: Any) -> list[str]:
    """A list parameter given as a JSON list, a comma list or a single value."""
    if isinstance(value, list):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        try:
            parsed = json.loads(text)
        except ValueError:
            raise E.invalid_param(f"(#100) Param must be a JSON list or a comma list: {text[:40]}") from None
        if not isinstance(parsed, list):
            raise E.invalid_param("(#100) Param must be a JSON list or a comma list")
        return [str(v).strip() for v in parsed if str(v).strip()]
    return [part.strip() for part in text.split(",") if part.strip()]


def enum_list(name: str, value: Any, allowed: Iterable[str]) -> list[str]:
    """A list parameter whose items must be in `allowed` (Graph's 'Param x[i] must be one of' error)."""
    allowed = sorted(allowed)
    items = list_param(value)
    for i, item in enumerate(items):
        if item not in allowed:
            raise E.invalid_param(f"(#100) Param {name}[{i}] must be one of {{{', '.join(allowed)}}} - got "
                                  f"\"{item[:40]}\"")  # fmt: skip
    return items


def int_param(name: str, value: Any, *, minimum: int = 0) -> int:
    """An integer parameter; Graph answers code 100 for anything else."""
    try:
        number = int(str(value).strip())
    except ValueError:
        raise E.invalid_param(f"(#100) Param {name} must be an integer") from None
    if number < minimum:
        raise E.invalid_param(f"(#100) Param {name} must be at least {minimum}")
    return number


def select_fields(
    node: Mapping[str, Any], fields: Any, default: Sequence[str], node_type: str
) -> dict[str, Any]:
    """The node reduced to the requested fields (Graph always includes `id`).

    `node` maps every readable field to its value; asking for one it lacks is Graph's code 100.
    Nested field syntax (`a{b}`) is accepted and answered with the whole sub-object.
    """
    if fields in (None, ""):
        wanted = list(default)
    else:
        wanted = [re.sub(r"[{(].*$", "", f) for f in list_param(fields)]
    out: dict[str, Any] = {}
    for name in wanted:
        if name not in node:
            raise E.nonexisting_field(name, node_type)
        if node[name] is not None:
            out[name] = node[name]
    if "id" in node:
        out = {"id": node["id"], **{k: v for k, v in out.items() if k != "id"}}
    return out


# ---- cursor paging --------------------------------------------------------------------------------


def cursor(object_id: str) -> str:
    """An opaque cursor naming one item (Graph's cursors are base64 too)."""
    return base64.urlsafe_b64encode(f"id:{object_id}".encode()).decode().rstrip("=")


def _cursor_id(value: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError):
        raw = ""
    if not raw.startswith("id:"):
        raise E.invalid_param("(#100) Invalid cursor", "Invalid cursor", "The paging cursor is not valid.")
    return raw[3:]


def paginate(
    items: Sequence[dict[str, Any]], params: Mapping[str, Any], url: str, *, default_limit: int = 25
) -> dict[str, Any]:
    """One page of `items` (each with an `id`) as `{data, paging}`, honouring limit/after/before.

    `url` is the request URL without secrets; `paging.next`/`previous` repeat it with a new cursor.
    The simulator leaves access_token and appsecret_proof out of those URLs even where Meta would echo
    them, so nothing it answers can carry a secret.
    """
    limit = int_param("limit", params["limit"], minimum=1) if params.get("limit") not in (None, "") else None
    limit = min(limit or default_limit, 1000)
    ids = [str(i["id"]) for i in items]
    start = 0
    if params.get("after"):
        anchor = _cursor_id(str(params["after"]))
        start = ids.index(anchor) + 1 if anchor in ids else len(ids)
        end = start + limit
    elif params.get("before"):
        anchor = _cursor_id(str(params["before"]))
        end = ids.index(anchor) if anchor in ids else 0
        start = max(0, end - limit)
    else:
        end = limit
    page = list(items[start:end])
    body: dict[str, Any] = {"data": page}
    if page:
        cursors = {"before": cursor(page[0]["id"]), "after": cursor(page[-1]["id"])}
        paging: dict[str, Any] = {"cursors": cursors}
        sep = "&" if "?" in url else "?"
        if end < len(items):
            paging["next"] = f"{url}{sep}limit={limit}&after={paging['cursors']['after']}"
        if start > 0:
            paging["previous"] = f"{url}{sep}limit={limit}&before={paging['cursors']['before']}"
        body["paging"] = paging
    return body
