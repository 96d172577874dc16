"""Typed errors for the Meta Graph API, decided from Meta's error envelope.

    WaguardError
     ├── MetaError                      any Graph failure; http_status, code, subcode, fbtrace_id
     │    ├── MetaTransient (Retryable)  codes 1, 2, HTTP 5xx, is_transient
     │    ├── MetaThrottled (Retryable)  codes 4, 17, 32, 613, 80007, 80008, plain HTTP 429
     │    ├── MetaUnavailable (Retryable) no answer at all: connect error, timeout
     │    ├── MetaTokenInvalid           190: expired or revoked token, never retried
     │    ├── MetaPermissionDenied       10, 200-299: never retried
     │    ├── MetaRegistrationLocked     133016: register/deregister budget spent at Meta
     │    ├── MetaInvalidRequest         100 and other 4xx
     │    │    └── MetaNotFound          the object does not exist (803, 100/33, HTTP 404)
     │    └── MetaUnexpectedResponse     a 2xx whose body is not what the call promises
     └── RegistrationBudgetExhausted    raised locally by the ledger before anything is sent

Retry decisions are made by type (`Retryable`), never by parsing messages. Messages are Meta's own
text, passed through `redact` anyway: Meta does not echo tokens, but a message is the one place
foreign text enters our logs, so anything shaped like a token or proof is cut out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from waguard.errors import Retryable, WaguardError

THROTTLE_CODES = frozenset({4, 17, 32, 613, 80007, 80008})
TRANSIENT_CODES = frozenset({1, 2})
TOKEN_INVALID_CODES = frozenset({190})
PERMISSION_CODES = frozenset({10, *range(200, 300)})
REGISTRATION_LOCKED_CODE = 133016
NOT_FOUND_CODE = 803
NOT_FOUND_SUBCODE = 33  # with code 100: "Object with ID ... does not exist"
INVALID_REQUEST_CODE = 100

REDACTED = "[redacted]"
# Shapes of secrets that could reach a message: Meta user/system-user tokens (EAA...), hex digests
# (an appsecret_proof is 64 hex, an app secret 32 hex), secret-bearing query parameters, and any
# long unbroken run of token characters. Object ids are digits only and stay readable.
_SECRET_SHAPES = re.compile(
    r"(?i)(?:access_token|input_token|appsecret_proof|client_secret|verify_token|pin)\"?\s*[=:]\s*\"?[^\s&\"',}]+"
    r"|EAA[A-Za-z0-9]{16,}"
    r"|\b[0-9a-fA-F]{32,}\b"
    r"|(?=[A-Za-z0-9_\-]*[A-Za-z])[A-Za-z0-9_\-]{40,}"
)


def redact(text: str | None, secrets: Iterable[str] = ()) -> str | None:
    """Remove known secret values and anything shaped like a token, proof or secret from `text`."""
    if text is None:
        return None
    for value in secrets:
        if value:
            text = text.replace(value, REDACTED)
    return _SECRET_SHAPES.sub(REDACTED, text)


class MetaError(WaguardError):
    """The Graph API refused or failed a call.

    Attributes name the call and Meta's diagnosis; none holds a secret. `fbtrace_id` is what Meta
    support asks for.
    """

    def __init__(
        self,
        message: str | None = None,
        *,
        http_status: int | None = None,
        code: int | None = None,
        subcode: int | None = None,
        fbtrace_id: str | None = None,
        type: str | None = None,  # Meta's field name; shadows the builtin only here
        user_title: str | None = None,
        user_msg: str | None = None,
        details: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
        secrets: Iterable[str] = (),
    ) -> None:
        secrets = tuple(secrets)
        self.message = redact(message, secrets) or ""
        self.http_status = http_status
        self.code = code
        self.subcode = subcode
        self.fbtrace_id = fbtrace_id
        self.type = type
        self.user_title = redact(user_title, secrets)
        self.user_msg = redact(user_msg, secrets)
        self.details = redact(details, secrets)
        self.path = path
        self.retry_after = retry_after
        super().__init__(self._describe())

    def _describe(self) -> str:
        where = f" on {self.path}" if self.path else ""
        ids = ", ".join(
            f"{k}={v}"
            for k, v in (
                ("http", self.http_status),
                ("code", self.code),
                ("subcode", self.subcode),
                ("fbtrace_id", self.fbtrace_id),
            )
            if v is not None
        )
        text = self.message + (f" ({self.details})" if self.details else "")
        return f"{type(self).__name__}{where} [{ids}]: {text}".rstrip(": ")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self)!r})"


class MetaTransient(MetaError, Retryable):
    """Meta had a passing problem (codes 1, 2, HTTP 5xx, or it said `is_transient`)."""


class MetaThrottled(MetaError, Retryable):
    """A rate limit was hit; `retry_after` (seconds) is set when Meta said how long to wait."""


class MetaUnavailable(MetaError, Retryable):
    """No answer from Graph at all (connection refused, timeout, broken connection)."""


class MetaTokenInvalid(MetaError):
    """Code 190: the token expired, was revoked or is malformed. Retrying cannot help."""


class MetaPermissionDenied(MetaError):
    """Codes 10 and 200-299: the token lacks a permission or the asset is not shared with it."""


class MetaRegistrationLocked(MetaError):
    """Code 133016: Meta refuses register/deregister for this number for the rest of its 72 h window."""


class MetaInvalidRequest(MetaError):
    """Code 100 or another 4xx: the request itself is wrong; fix it, do not retry."""


class MetaNotFound(MetaInvalidRequest):
    """The object does not exist or is not visible to this token (803, 100 with subcode 33, 404)."""


class MetaUnexpectedResponse(MetaError):
    """A 2xx answer that is not what the call promises (e.g. no `{"success": true}`)."""


class RegistrationBudgetExhausted(WaguardError):
    """The local ledger refused a register/deregister: the number's 72 h budget is used up.

    Raised before any request is sent, so Meta's own lock (133016) is never reached. Not retryable
    within a run: the budget frees `retry_at` (unix seconds) at the earliest.
    """

    def __init__(self, phone_number_id: str, *, limit: int, window_s: float, retry_at: float) -> None:
        self.phone_number_id = phone_number_id
        self.limit = limit
        self.window_s = window_s
        self.retry_at = retry_at
        super().__init__(
            f"phone number {phone_number_id}: {limit} register/deregister attempts already recorded in "
            f"the last {window_s / 3600:g} h; the next one is allowed at unix time {retry_at:.0f}"
        )


def error_class_for(
    http_status: int | None, code: int | None, subcode: int | None = None, is_transient: bool = False
) -> type[MetaError]:
    """Pick the error class for a Graph failure.

    Order matters: codes that must never be retried win over `is_transient` and HTTP 429/5xx, so a
    revoked token or Meta's registration lock is never hammered.
    """
    if code in TOKEN_INVALID_CODES or (code is None and http_status == 401):
        return MetaTokenInvalid
    if code in PERMISSION_CODES or (code is None and http_status == 403):
        return MetaPermissionDenied
    if code == REGISTRATION_LOCKED_CODE:
        return MetaRegistrationLocked
    if code in THROTTLE_CODES or http_status == 429:
        return MetaThrottled
    if code in TRANSIENT_CODES or is_transient or (http_status is not None and http_status >= 500):
        return MetaTransient
    if (
        code == NOT_FOUND_CODE
        or (code == INVALID_REQUEST_CODE and subcode == NOT_FOUND_SUBCODE)
        or (code is None and http_status == 404)
    ):
        return MetaNotFound
    if code == INVALID_REQUEST_CODE or (http_status is not None and 400 <= http_status < 500):
        return MetaInvalidRequest
    return MetaError
