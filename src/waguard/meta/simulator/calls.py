"""What a Graph handler receives and returns, and how operations are declared.

Each handler module (`phone.py`, `templates.py`, `access.py`) exports `OPERATIONS`, a mapping from
(object kind, edge, method) to an `Operation`; `graph.py` routes calls through them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator.seed import TokenSeed
from waguard.meta.simulator.state import AppToken, SimState

# The edge key of a node-level operation (GET /{id}) and of the root /debug_token.
NODE = ""
ROOT = "root"


@dataclass
class Call:
    """One routed Graph call."""

    sim: SimState
    method: str
    version: str
    object_id: str
    kind: str
    params: dict[str, Any]
    token: TokenSeed | AppToken
    now: float
    page_url: str  # the request URL without secrets and cursors, for paging links
    has_proof: bool = False

    def param(self, name: str) -> Any:
        """A parameter from the query, form or JSON body (None if absent or empty)."""
        value = self.params.get(name)
        return None if value == "" else value

    def required(self, name: str) -> Any:
        """A parameter that must be present (Graph's code 100 'The parameter x is required')."""
        value = self.param(name)
        if value is None:
            raise E.missing_param(name)
        return value

    @property
    def user_id(self) -> str | None:
        """The user the token acts for (None for an app token)."""
        return self.token.user_id


@dataclass
class Answer:
    """A successful answer: JSON body and status."""

    body: Any
    status: int = 200


Handler = Callable[[Call], Awaitable[Answer]]


@dataclass(frozen=True)
class Operation:
    """A Graph operation the simulator serves.

    `declared`: the HTTP statuses Meta's OpenAPI spec declares for it (empty when the spec does not
    describe it), which decide the status of error answers (see `envelope.http_status`).
    `scope`: the permission the token needs. `admin`: only business admins may call it.
    `app_token`: an app access token may call it. `proof`: appsecret_proof is required even when the
    app's 'Require App Secret' switch is off (Meta documents this for system-user token generation).
    """

    name: str
    handler: Handler
    declared: frozenset[int] = frozenset()
    scope: str | None = "whatsapp_business_management"
    admin: bool = False
    app_token: bool = False
    proof: bool = False


OperationTable = Mapping[tuple[str, str, str], Operation]
