"""The request record: every Graph call the simulator received, with every secret masked.

Drills read it (GET /_sim/requests) to prove that no destructive call was repeated, and scan it for
leaked secrets, so nothing secret may enter it: tokens are named by their simulator id, and values of
secret-bearing parameters (access_token, input_token, appsecret_proof, pin, verify_token, ...) are
replaced by '***' wherever they appear, nested bodies included. As a second net, any string that
contains a secret the simulator knows (a token value, a current or past app secret) is masked too,
and a value equal to a known PIN is masked even under an innocent key.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import BaseModel, Field

MASK = "***"
SECRET_KEYS = frozenset({
    "access_token", "input_token", "appsecret_proof", "pin", "verify_token", "client_secret",
    "fb_exchange_token", "password", "data", "secret", "code", "hub.verify_token",
})  # fmt: skip
# `data` and `code` are secret only inside some bodies (backup.data, oauth code); in a query they are
# rare enough that masking them everywhere costs nothing.
MIN_SUBSTRING_SECRET = 12  # shorter known secrets (PINs) are matched as whole values only
MAX_RECORDS = 10_000


class RequestEntry(BaseModel):
    """One Graph call as the simulator saw and answered it."""

    seq: int
    time: float
    method: str
    path: str
    operation: str | None = Field(None, description="e.g. phone_number.deregister; None if unrouted.")
    query: dict[str, Any] = Field(default_factory=dict)
    body: dict[str, Any] | None = None
    body_keys: list[str] = Field(default_factory=list)
    token_id: str | None = Field(None, description="The simulator's id of the token used, never its value.")
    status: int
    error_code: int | None = None
    error_subcode: int | None = None
    fault: str | None = None
    fbtrace_id: str


class Masker:
    """Masks secret values: by key, by known secret substrings, and by known whole values."""

    def __init__(self, secrets: Iterable[str]) -> None:
        values = {s for s in secrets if s}
        self._long = sorted((s for s in values if len(s) >= MIN_SUBSTRING_SECRET), key=len, reverse=True)
        self._whole = values

    def text(self, value: str) -> str:
        """A string with every known secret in it replaced."""
        if value in self._whole:
            return MASK
        for secret in self._long:
            if secret in value:
                value = value.replace(secret, MASK)
        return value

    def value(self, key: str, value: Any) -> Any:
        """A parameter value, masked whole when its key is secret-bearing."""
        if key.lower() in SECRET_KEYS:
            return MASK
        if isinstance(value, Mapping):
            return {str(k): self.value(str(k), v) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(key, v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value

    def params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """A whole query or body, masked."""
        return {self.text(str(k)): self.value(str(k), v) for k, v in params.items()}


class RequestLog:
    """A bounded list of RequestEntry; the oldest entries go first when it is full."""

    def __init__(self, limit: int = MAX_RECORDS) -> None:
        self.entries: list[RequestEntry] = []
        self.dropped = 0
        self._seq = 0
        self._limit = limit

    def next_seq(self) -> int:
        """The sequence number of the next entry."""
        self._seq += 1
        return self._seq

    def add(self, entry: RequestEntry) -> None:
        """Append an entry, dropping the oldest past the limit."""
        self.entries.append(entry)
        if len(self.entries) > self._limit:
            del self.entries[0]
            self.dropped += 1

    def clear(self) -> None:
        """Forget every entry (sequence numbers keep counting)."""
        self.entries.clear()
        self.dropped = 0
