"""Raw Graph calls on the Meta Graph simulator, for the tests/contract/test_meta_simulator_*.py modules.

`graph` sends one call the way Meta expects it (Bearer token, appsecret_proof, a User-Agent the spec
accepts); `error` and `code` read Meta's error envelope; `issue` and `debug` reach tokens.
"""

from __future__ import annotations

from typing import Any

import httpx

from tests.fixtures.meta import MetaSim
from waguard.meta.simulator.rules import appsecret_proof

UA = "waguard/0.1.0"  # the spec validates User-Agent against name/X.Y.Z
DEFAULT: Any = object()
WA = {"messaging_product": "whatsapp"}


def graph(m: MetaSim, method: str, path: str, *, token: Any = DEFAULT, proof: Any = True,
          params: dict[str, Any] | None = None, **kwargs: Any) -> httpx.Response:  # fmt: skip
    """One raw Graph call: Bearer token and (by default) a correct appsecret_proof."""
    tok = m.token.get_secret_value() if token is DEFAULT else token
    headers = {"User-Agent": UA, **({"Authorization": f"Bearer {tok}"} if tok else {})}
    query = dict(params or {})
    if proof is True and tok:
        query["appsecret_proof"] = appsecret_proof(tok, m.app_secret.get_secret_value())
    elif isinstance(proof, str):
        query["appsecret_proof"] = proof
    return m.admin.request(method, f"/{m.version}{path}", params=query, headers=headers, **kwargs)


def error(response: httpx.Response) -> dict[str, Any]:
    """The `error` object of Meta's envelope, checking the envelope's mandatory keys."""
    err = response.json()["error"]
    assert {"message", "type", "code", "fbtrace_id"} <= set(err)
    return dict(err)


def code(response: httpx.Response) -> int:
    """The Graph error code of an answer."""
    return int(error(response)["code"])


def issue(m: MetaSim, user_id: str, **extra: Any) -> dict[str, str]:
    """A new token through the admin API: {"id", "access_token"}."""
    response = m.admin.post("/_sim/tokens", json={"user_id": user_id, **extra})
    response.raise_for_status()
    return dict(response.json())


def debug(m: MetaSim, input_token: str, **kwargs: Any) -> httpx.Response:
    """GET /debug_token."""
    return graph(m, "GET", "/debug_token", params={"input_token": input_token}, **kwargs)
