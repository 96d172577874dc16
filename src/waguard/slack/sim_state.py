"""The Slack simulator's state: channels, messages with threads, recorded requests, injected 429s.

Kept apart from the HTTP layer (simulator.py) so tests and drills can inspect and steer it directly
(`app.state.sim`). The server thread and the test thread both touch it, hence the lock; every
accessor returns deep copies.

Tokens: only SHA-256 digests of the bot tokens are kept, and requests are recorded without the
Authorization header or a `token` argument, so neither a state dump nor the request record can leak one.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

DEFAULT_CHANNELS = ("C0INCIDENT", "C0ESCALATE")  # SlackSettings.channel and .escalation_channel
BOT_USER_ID = "U0WAGUARDBOT"
BOT_ID = "B0WAGUARDBOT"
APP_ID = "A0WAGUARD"

TokenCheck = Literal["valid", "invalid", "missing"]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass
class RateLimitRule:
    """The next `remaining` calls (of `method`, or of any method) answer HTTP 429."""

    remaining: int
    retry_after: int
    method: str | None = None


class SimState:
    """Everything the simulator remembers. Built by `create_app`, reachable as `app.state.sim`."""

    def __init__(self, *, bot_tokens: Iterable[str], team_id: str = "T0WAGUARD",
                 channels: Iterable[str] = (), clock: Callable[[], float] | None = None) -> None:
        self.team_id = team_id
        self.clock = clock or time.time
        self._token_digests = frozenset(_digest(t) for t in bot_tokens if t)
        self._messages: dict[str, dict[str, dict[str, Any]]] = {  # channel -> ts -> message
            c: {} for c in (*DEFAULT_CHANNELS, *channels)
        }
        self._outside: set[str] = set()  # channels that exist but the bot was never invited to
        self._requests: list[dict[str, Any]] = []
        self._rules: list[RateLimitRule] = []
        self._last_us = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SimState(team_id={self.team_id!r}, channels={sorted(self._messages)!r})"

    # ---- tokens, rate limits, request record ------------------------------------------------------

    def check_token(self, token: str | None) -> TokenCheck:
        """Whether `token` is one of the bot tokens, comparing digests in constant time."""
        if not token:
            return "missing"
        presented = _digest(token)
        ok = False
        for known in self._token_digests:
            ok |= hmac.compare_digest(presented, known)
        return "valid" if ok else "invalid"

    def rate_limit(self, count: int, retry_after: int, method: str | None = None) -> None:
        """Make the next `count` calls (of `method`, if given) answer HTTP 429 with `retry_after`."""
        if count < 0 or retry_after < 0:
            raise ValueError("count and retry_after must be >= 0")
        with self._lock:
            self._rules.append(RateLimitRule(count, retry_after, method))

    def take_rate_limit(self, method: str) -> int | None:
        """Consume one injected 429 for `method`; its Retry-After, or None when none is pending."""
        with self._lock:
            for rule in self._rules:
                if rule.remaining > 0 and rule.method in (None, method):
                    rule.remaining -= 1
                    return rule.retry_after
            self._rules = [r for r in self._rules if r.remaining > 0]
        return None

    def record(self, entry: dict[str, Any]) -> None:
        """Append one request to the record (the caller has already dropped any token)."""
        with self._lock:
            self._requests.append({"seq": len(self._requests), **copy.deepcopy(entry)})

    def requests(self, method: str | None = None) -> list[dict[str, Any]]:
        """The recorded requests, oldest first, optionally only those of one API method."""
        with self._lock:
            return [copy.deepcopy(r) for r in self._requests if method in (None, r.get("method"))]

    # ---- channels and messages --------------------------------------------------------------------

    def add_channel(self, channel: str, *, member: bool = True) -> None:
        """Make `channel` exist (empty) if it does not yet, with the bot in it unless `member` is False."""
        with self._lock:
            self._messages.setdefault(channel, {})
            if member:
                self._outside.discard(channel)
            else:
                self._outside.add(channel)

    def is_member(self, channel: str) -> bool:
        """Whether the bot is in `channel` (Slack refuses its posts elsewhere: not_in_channel)."""
        with self._lock:
            return channel in self._messages and channel not in self._outside

    def has_channel(self, channel: str) -> bool:
        with self._lock:
            return channel in self._messages

    def _next_ts(self) -> str:
        # Slack ts: seconds.microseconds, unique and increasing even when the clock stalls or steps back.
        us = max(int(self.clock() * 1_000_000), self._last_us + 1)
        self._last_us = us
        return f"{us // 1_000_000}.{us % 1_000_000:06d}"

    def post(self, channel: str, fields: dict[str, Any], thread_ts: str | None = None) -> dict[str, Any]:
        """Store a new message (a reply when `thread_ts` is given) and return a copy of it.

        Raises:
            KeyError: "channel_not_found" or "thread_not_found".
        """
        with self._lock:
            if channel not in self._messages:
                raise KeyError("channel_not_found")
            store = self._messages[channel]
            parent = store.get(thread_ts) if thread_ts else None
            # Stricter than Slack, which accepts a reply's ts or an unknown ts and loses the message.
            if thread_ts and (parent is None or parent.get("thread_ts", parent["ts"]) != parent["ts"]):
                raise KeyError("thread_not_found")
            ts = self._next_ts()
            message = {"type": "message", "user": BOT_USER_ID, "bot_id": BOT_ID, "app_id": APP_ID,
                       "team": self.team_id, **copy.deepcopy(fields), "ts": ts}
            if parent is not None:
                message["thread_ts"] = parent["ts"]
                parent["thread_ts"] = parent["ts"]
                parent["reply_count"] = parent.get("reply_count", 0) + 1
                users = parent.setdefault("reply_users", [])
                if BOT_USER_ID not in users:
                    users.append(BOT_USER_ID)
                parent["reply_users_count"] = len(users)
                parent["latest_reply"] = ts
            store[ts] = message
            return copy.deepcopy(message)

    def update(self, channel: str, ts: str, fields: dict[str, Any]) -> dict[str, Any]:
        """Replace the given fields of a message (absent ones are kept, as Slack does); return a copy.

        Raises:
            KeyError: "channel_not_found" or "message_not_found".
        """
        with self._lock:
            if channel not in self._messages:
                raise KeyError("channel_not_found")
            message = self._messages[channel].get(ts)
            if message is None:
                raise KeyError("message_not_found")
            message.update(copy.deepcopy(fields))
            message["edited"] = {"user": BOT_USER_ID, "ts": self._next_ts()}
            return copy.deepcopy(message)

    def thread(self, channel: str, ts: str) -> list[dict[str, Any]]:
        """The parent of the thread `ts` is in, then its replies in ts order.

        Raises:
            KeyError: "channel_not_found" or "thread_not_found".
        """
        with self._lock:
            if channel not in self._messages:
                raise KeyError("channel_not_found")
            store = self._messages[channel]
            message = store.get(ts)
            if message is None:
                raise KeyError("thread_not_found")
            root = message.get("thread_ts", message["ts"])
            replies = [m for m in store.values() if m.get("thread_ts") == root and m["ts"] != root]
            return copy.deepcopy([store[root], *sorted(replies, key=lambda m: ts_key(m["ts"]))])

    def message(self, channel: str, ts: str) -> dict[str, Any] | None:
        """A copy of one message, or None."""
        with self._lock:
            found = self._messages.get(channel, {}).get(ts)
            return copy.deepcopy(found) if found is not None else None

    def messages(self, channel: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Per channel, its top-level messages in order, each with its thread's `replies` nested."""
        with self._lock:
            out: dict[str, list[dict[str, Any]]] = {}
            for ch, store in self._messages.items():
                if channel is not None and ch != channel:
                    continue
                ordered = sorted(store.values(), key=lambda m: ts_key(m["ts"]))
                tops = [dict(copy.deepcopy(m), replies=[]) for m in ordered
                        if m.get("thread_ts", m["ts"]) == m["ts"]]
                by_ts = {m["ts"]: m for m in tops}
                for m in ordered:
                    root = m.get("thread_ts", m["ts"])
                    if root != m["ts"]:
                        by_ts[root]["replies"].append(copy.deepcopy(m))
                out[ch] = tops
            return out

    def clear_messages(self) -> None:
        """Forget every message; channels stay, and ts values keep increasing."""
        with self._lock:
            for store in self._messages.values():
                store.clear()

    def reset_requests(self) -> None:
        """Forget the request record."""
        with self._lock:
            self._requests.clear()

    def reset(self) -> None:
        """Forget messages, recorded requests and pending 429s (a fresh simulator, same tokens)."""
        self.clear_messages()
        with self._lock:
            self._requests.clear()
            self._rules.clear()


def ts_key(ts: str) -> tuple[int, int]:
    """Sort key of a Slack ts ("1732460000.000100"); raises ValueError on anything else."""
    seconds, _, micros = ts.partition(".")
    return int(seconds), int(micros or 0)
