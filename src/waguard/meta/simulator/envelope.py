"""Meta's error envelope and the HTTP status each error gets, as pure functions.

Every error the simulator answers is `{"error": {"message", "type", "code", "error_subcode"?,
"error_user_title"?, "error_user_msg"?, "is_transient"?, "fbtrace_id"}}` with a random fbtrace_id.

HTTP status policy (Graph answers most errors with 400; Meta's OpenAPI spec declares more specific
statuses for some operations, and the simulator follows the spec where it declares one):
- code 190 / 102 / 104 (token problems): 401 where the operation declares 401, else 400;
- codes 4, 17, 80007, 80008 (throttling): 429 where declared, else 400;
- codes 10 and 200-299 (permissions): 403 where declared, else 400;
- codes 1, 2 (transient): 500;
- anything else: 400.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

GRAPH_DOCS = "Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api"
ALL_STATUSES = frozenset({200, 400, 401, 403, 404, 422, 429, 500})  # what the OAS phone/WABA ops declare
ONLY_200 = frozenset({200})  # the OAS template operations declare no error answers at all
THROTTLE_CODES = frozenset({4, 17, 32, 613, 80007, 80008})
TOKEN_CODES = frozenset({102, 104, 190})


def fbtrace_id() -> str:
    """A random trace id shaped like Meta's (23 url-safe characters starting with 'A')."""
    return "A" + secrets.token_urlsafe(17)[:22]


@dataclass
class GraphError(Exception):
    """An error the simulator answers with Meta's envelope."""

    message: str
    code: int
    type: str = "OAuthException"
    subcode: int | None = None
    user_title: str | None = None
    user_msg: str | None = None
    is_transient: bool | None = None
    status: int | None = None  # forces an HTTP status (faults); None applies the policy above
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        super().__init__(self.message)

    def body(self, trace_id: str) -> dict[str, Any]:
        """The JSON envelope, keys in Meta's order."""
        err: dict[str, Any] = {"message": self.message, "type": self.type, "code": self.code}
        if self.subcode is not None:
            err["error_subcode"] = self.subcode
        if self.is_transient is not None:
            err["is_transient"] = self.is_transient
        if self.user_title is not None:
            err["error_user_title"] = self.user_title
        if self.user_msg is not None:
            err["error_user_msg"] = self.user_msg
        if self.details:
            err["error_data"] = self.details
        err["fbtrace_id"] = trace_id
        return {"error": err}


def http_status(err: GraphError, declared: frozenset[int]) -> int:
    """The HTTP status for `err` on an operation whose spec declares `declared` statuses."""
    if err.status is not None:
        return err.status
    if err.code in TOKEN_CODES:
        return 401 if 401 in declared else 400
    if err.code in THROTTLE_CODES:
        return 429 if 429 in declared else 400
    if err.code == 10 or 200 <= err.code <= 299:
        return 403 if 403 in declared else 400
    if err.code in (1, 2):
        return 500
    return 400


# ---- the errors, with Meta's wording --------------------------------------------------------------


def unsupported(method: str, object_id: str) -> GraphError:
    """Code 100 subcode 33: the object does not exist, is not visible, or lacks the operation."""
    return GraphError(
        f"Unsupported {method.lower()} request. Object with ID '{object_id}' does not exist, cannot be "
        f"loaded due to missing permissions, or does not support this operation. {GRAPH_DOCS}",
        100, "GraphMethodException", subcode=33,
    )  # fmt: skip


def unknown_path(path: str) -> GraphError:
    """Code 2500: the path is not a Graph path at all."""
    return GraphError(f"Unknown path components: {path}", 2500)


def nonexisting_field(name: str, node_type: str) -> GraphError:
    """Code 100: a `fields=` entry or edge the node does not have."""
    return GraphError(f"(#100) Tried accessing nonexisting field ({name}) on node type ({node_type})", 100)


def missing_param(name: str) -> GraphError:
    """Code 100: a required parameter is absent."""
    return GraphError(f"(#100) The parameter {name} is required", 100)


def invalid_param(message: str, user_title: str | None = None, user_msg: str | None = None) -> GraphError:
    """Code 100 with Meta's generic text plus a user-facing explanation."""
    return GraphError(message, 100, user_title=user_title, user_msg=user_msg)


def token_missing() -> GraphError:
    """Code 104: no access token at all."""
    return GraphError("An access token is required to request this resource.", 104)


def token_unparsable() -> GraphError:
    """Code 190: a string that is not a token Meta issued."""
    return GraphError("Invalid OAuth access token - Cannot parse access token", 190)


def token_revoked() -> GraphError:
    """Code 190 subcode 467 (Graph: 'access token has expired, been revoked, or is otherwise invalid')."""
    return GraphError("Error validating access token: The session is invalid because the user logged out.",
                      190, subcode=467)  # fmt: skip


def token_expired(expired_at: str) -> GraphError:
    """Code 190 subcode 463."""
    message = f"Error validating access token: Session has expired on {expired_at}."
    return GraphError(message, 190, subcode=463)


def proof_missing() -> GraphError:
    """Code 100: 'Require App Secret' is on and the call has no appsecret_proof."""
    message = "API calls from the server require an appsecret_proof argument"
    return GraphError(message, 100, "GraphMethodException")


def proof_invalid() -> GraphError:
    """Code 100: the appsecret_proof does not match the token under the current app secret."""
    return GraphError("Invalid appsecret_proof provided in the API argument", 100, "GraphMethodException")


def permission(scope: str | None = None) -> GraphError:
    """Code 200: the token lacks a permission or its user has no access to the object."""
    if scope:
        return GraphError(f"(#200) Requires {scope} permission to manage the object", 200)
    return GraphError("(#200) Permissions error", 200)


def app_throttled() -> GraphError:
    """Code 4: the app's rolling-hour call budget is spent."""
    return GraphError("(#4) Application request limit reached", 4, is_transient=True)


def waba_throttled() -> GraphError:
    """Code 80007: the WABA's rolling-hour budget is spent."""
    return GraphError("(#80007) There have been too many calls to this WhatsApp Business account. "
                      "Wait a bit and try again.", 80007, is_transient=True)  # fmt: skip


def registration_locked() -> GraphError:
    """Code 133016: more than 10 register/deregister requests for the number in 72 h."""
    return GraphError(
        "(#133016) Account register deregister rate limit exceeded", 133016,
        user_title="Too many attempts",
        user_msg="Registration or deregistration failed because there were too many attempts for this phone "
        "number in a short period of time.",
    )  # fmt: skip


def pin_format() -> GraphError:
    """Code 100: a PIN that is not a string of six digits (OAS register example wording)."""
    return GraphError("Invalid PIN format. PIN must be exactly 6 digits", 100)


def pin_mismatch() -> GraphError:
    """Code 133005: register with a PIN that differs from the number's two-step PIN."""
    return GraphError("(#133005) Two step verification PIN Mismatch", 133005,
                      user_title="PIN mismatch", user_msg="The two-step verification PIN is incorrect.")


def not_registered() -> GraphError:
    """Code 100 subcode 2207051: deregister of a number that is not registered (OAS example)."""
    return GraphError("Phone number not registered on the WhatsApp Business Platform.", 100, subcode=2207051)


def template_missing(name: str) -> GraphError:
    """Code 100: no template of that name (or id+name) exists. Wording uncertain (not documented)."""
    return invalid_param("Invalid parameter", "Message template not found",
                         f"Message template \"{name}\" does not exist in this WhatsApp Business account.")


def template_disabled(name: str) -> GraphError:
    """Code 100: DISABLED templates cannot be deleted. Meta documents the rule, not the error: uncertain."""
    return invalid_param("Invalid parameter", "Message template can't be deleted",
                         f"Message template \"{name}\" is DISABLED; disabled templates can't be deleted.")


def callback_verification_failed(detail: str) -> GraphError:
    """Code 2200: Meta's GET to an override callback did not echo the challenge."""
    return GraphError(f"(#2200) Callback verification failed with the following errors: {detail}", 2200)


def transient() -> GraphError:
    """Code 2, HTTP 500 (OAS example wording)."""
    return GraphError("An unexpected error has occurred. Please retry your request later.", 2,
                      "OAuthException", is_transient=True, status=500)  # fmt: skip


def plain_429() -> GraphError:
    """HTTP 429 with the OAS's example body (code 4, subcode 2446079)."""
    return GraphError("Application request limit reached", 4, subcode=2446079, is_transient=True, status=429)
