"""Typed errors for the Slack Web API and for Slack request signatures.

    WaguardError
     ├── SlackError                    a Web API call failed; method, error (Slack's code), http_status
     │    ├── SlackAuthError           invalid_auth, not_authed, token_revoked, ...: never retried
     │    ├── SlackNotFound            channel_not_found, message_not_found, thread_not_found
     │    ├── SlackRateLimited (Retryable)  HTTP 429 after the in-process retries were spent
     │    └── SlackUnavailable (Retryable)  no answer (connect error, timeout) or HTTP 5xx
     └── SlackSignatureError           an inbound request failed its signature check (signing.py)
          ├── SignatureMissing         a header is absent or empty
          ├── SignatureMalformed       a header is not in Slack's format
          ├── RequestStale             the timestamp is outside the window
          └── SignatureMismatch        the HMAC does not match

Messages carry the method name and Slack's error code, never the token, a request body or a header:
errors end up in Prefect state messages, which are stored in plain text.
"""

from __future__ import annotations

from waguard.errors import Retryable, WaguardError

AUTH_ERRORS = frozenset({
    "invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
    "no_permission", "missing_scope", "not_allowed_token_type",
})
NOT_FOUND_ERRORS = frozenset({"channel_not_found", "message_not_found", "thread_not_found"})


class SlackError(WaguardError):
    """A Slack Web API call failed.

    Attributes:
        method: the Web API method, e.g. "chat.postMessage".
        error: Slack's error code ("channel_not_found"), or a short local reason.
        http_status: the HTTP status, when there was an answer.
    """

    def __init__(self, method: str, error: str, *, http_status: int | None = None,
                 detail: str | None = None) -> None:
        self.method = method
        self.error = error
        self.http_status = http_status
        text = f"Slack {method} failed: {error}"
        if http_status is not None and http_status != 200:
            text += f" (HTTP {http_status})"
        if detail:
            text += f"; {detail}"
        super().__init__(text)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(method={self.method!r}, error={self.error!r}, "
                f"http_status={self.http_status!r})")

    def __reduce__(self) -> tuple[object, ...]:
        # Exceptions pickle as cls(*args); ours take keyword-only arguments, so spell them out
        # (Prefect pickles a failed task's exception into its state).
        return (_rebuild, (type(self), self.method, self.error, self.http_status, str(self),
                           getattr(self, "retry_after", None)))


def _rebuild(cls: type[SlackError], method: str, error: str, http_status: int | None, text: str,
             retry_after: float | None) -> SlackError:
    err = cls.__new__(cls)
    Exception.__init__(err, text)
    err.method, err.error, err.http_status = method, error, http_status
    if retry_after is not None:
        err.retry_after = retry_after  # type: ignore[attr-defined]
    return err


class SlackAuthError(SlackError):
    """The token was refused (invalid, revoked, lacking a scope). Retrying will not help."""


class SlackNotFound(SlackError):
    """The channel, message or thread does not exist (or the bot cannot see it)."""


class SlackRateLimited(SlackError, Retryable):
    """Slack answered HTTP 429 and the client's own retries are spent.

    `retry_after` is Slack's Retry-After in seconds, when it sent one.
    """

    def __init__(self, method: str, *, retry_after: float | None, retries: int) -> None:
        self.retry_after = retry_after
        wait = f"retry after {retry_after:g}s" if retry_after is not None else "no Retry-After given"
        super().__init__(method, "ratelimited", http_status=429,
                         detail=f"gave up after {retries} retries, {wait}")


class SlackUnavailable(SlackError, Retryable):
    """Slack (or the simulator) did not answer, or answered with a server error."""


def error_for(method: str, error: str, *, http_status: int | None = None) -> SlackError:
    """The SlackError subclass for a Slack error code (pure)."""
    if error in AUTH_ERRORS:
        return SlackAuthError(method, error, http_status=http_status)
    if error in NOT_FOUND_ERRORS:
        return SlackNotFound(method, error, http_status=http_status)
    if http_status is not None and http_status >= 500:
        return SlackUnavailable(method, error, http_status=http_status)
    return SlackError(method, error, http_status=http_status)


class SlackSignatureError(WaguardError):
    """An inbound Slack request failed verification; reject it (HTTP 401) before parsing."""


class SignatureMissing(SlackSignatureError):
    """X-Slack-Request-Timestamp or X-Slack-Signature is absent or empty."""


class SignatureMalformed(SlackSignatureError):
    """A signature header is present but not in Slack's format."""


class RequestStale(SlackSignatureError):
    """The request timestamp is further from now than the window allows (replay or clock skew)."""


class SignatureMismatch(SlackSignatureError):
    """The signature does not match the body: wrong secret, or the body was altered."""
