"""The intake's HTTP connections, bounded: header size and count, read timeouts, a whole-request
deadline and a connection cap.

uvicorn's httptools protocol has none of these (a 32 MiB header is buffered whole, a client that
sends nothing or one byte every few seconds holds its connection forever, and `limit_concurrency`
still accepts every socket). `GuardedProtocol` is that protocol with the limits added where the bytes
arrive, before the parser buffers them:

- the head of a request (request line and headers) may be at most `max_header_bytes` and carry at
  most `max_headers` fields, else 431 and the connection closes;
- the head must arrive within `header_timeout_s` of the connection opening or of its first byte,
  else 408 (or a silent close if nothing was sent);
- while a body is read, no more than `body_timeout_s` may pass without a byte, and the whole request
  must have arrived within `request_timeout_s` of its first byte (so a trickle is cut off too);
- at most `max_connections` are open: a new one beyond the cap evicts the oldest connection that has
  not finished sending a request head (idle keep-alive, silent, or slow-loris), so held sockets
  cannot lock a real sender out; when none can be evicted the new one gets 503 and is closed.

Time spent by the application (verifying, writing the store) is not the client's and is not timed
here; reading paused by flow control is not counted against the client either.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

Refusal = Callable[[str], None]  # told a closed-set reason each time a connection is refused or cut


@dataclass(frozen=True)
class Limits:
    max_header_bytes: int = 16_384
    max_headers: int = 64
    header_timeout_s: float = 10.0
    body_timeout_s: float = 10.0
    request_timeout_s: float = 30.0
    max_connections: int = 1024

    @classmethod
    def from_settings(cls, intake: Any) -> Limits:
        return cls(**{name: getattr(intake, name) for name in cls.__dataclass_fields__})


@dataclass
class ConnectionGuard:
    """What the connections of one server share: the limits, who may be evicted, and the counter."""

    limits: Limits
    on_refusal: Refusal = lambda reason: None
    open: int = 0
    # connections still waiting for (or reading) a request head, oldest first: the eviction order
    evictable: dict[GuardedProtocol, None] = field(default_factory=dict)

    def protocol(self) -> type[GuardedProtocol]:
        """A protocol class bound to this guard (uvicorn builds one instance per connection)."""
        return type("GuardedProtocolBound", (GuardedProtocol,), {"guard": self})


class _Refused(Exception):
    def __init__(self, status: int, reason: str) -> None:
        self.status, self.reason = status, reason


class GuardedProtocol(HttpToolsProtocol):
    guard: ConnectionGuard

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes = 0
        self._header_count = 0
        self._reading_head = True
        self._timer: asyncio.TimerHandle | None = None
        self._due: float | None = None  # loop time the current phase's limit runs out
        self._phase = "head"  # head | body | app
        self._began = False  # a byte of the current request has arrived
        self._deadline = 0.0  # whole-request deadline (loop time)
        self._last_read = 0.0

    # -- connections ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        g = self.guard
        if g.open >= g.limits.max_connections and not self._evict_one():
            g.on_refusal("connection-cap")
            transport.write(
                b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            )
            transport.close()
            self.transport = transport
            self._closed_early = True
            return
        self._closed_early = False
        g.open += 1
        super().connection_made(transport)
        self._await_head(self.loop.time())

    def connection_lost(self, exc: Exception | None) -> None:
        if self._closed_early:
            return
        self.guard.open -= 1
        self.guard.evictable.pop(self, None)
        self._drop_timer()
        super().connection_lost(exc)

    def _evict_one(self) -> bool:
        for conn in self.guard.evictable:
            if conn.cycle is None or conn.cycle.response_complete:
                # Its connection_lost (which frees the slot) comes on the next loop turn: until then
                # the count may be one over the cap.
                self.guard.evictable.pop(conn)
                self.guard.on_refusal("evicted-idle")
                conn._drop_timer()
                conn.transport.close()
                return True
        return False

    # -- bytes in ------------------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._unset_keepalive_if_required()
        self._last_read = self.loop.time()
        try:
            if self._reading_head:
                room = self.guard.limits.max_header_bytes - self._head_bytes
                if len(data) > room:
                    self.parser.feed_data(data[:room])  # may complete the head, which resets the count
                    if self._reading_head:
                        raise _Refused(431, "header-too-large")
                    data = data[room:]
                else:
                    self._head_bytes += len(data)
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError as err:
            refused = err.__context__
            if isinstance(refused, _Refused):
                self._refuse(refused.status, refused.reason)
            else:
                self._refuse(400, "bad-request")
        except _Refused as refused:
            self._refuse(refused.status, refused.reason)
        except httptools.HttpParserError:
            self._refuse(400, "bad-request")
        except httptools.HttpParserUpgrade:
            self._refuse(400, "upgrade")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0
        self._began = True
        now = self.loop.time()
        self._deadline = now + self.guard.limits.request_timeout_s
        if self._phase != "head" or self._timer is None:  # a pipelined or keep-alive request
            self._await_head(now)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.guard.limits.max_headers:
            raise _Refused(431, "too-many-headers")
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._head_bytes = 0
        self.guard.evictable.pop(self, None)
        self._phase = "body"
        self._arm(min(self.loop.time() + self.guard.limits.body_timeout_s, self._deadline))
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._cancel_timer()
        self._phase = "app"
        self._began = False
        self._reading_head = True  # the next bytes on this connection are the next request's head
        self.guard.evictable[self] = None
        super().on_message_complete()

    # -- timing --------------------------------------------------------------------------------

    def _await_head(self, now: float) -> None:
        self._phase = "head"
        self._reading_head = True
        self.guard.evictable[self] = None
        self._arm(now + self.guard.limits.header_timeout_s)

    def _arm(self, when: float) -> None:
        # One timer per connection, moved only when the new due time is earlier than it: one that
        # fires before the due time sets itself again, so request after request on a keep-alive
        # connection costs no timer call (three calls each were a tenth of the server's time).
        self._due = when
        if self._timer is not None:
            if self._timer.when() <= when:
                return
            self._timer.cancel()
        self._timer = self.loop.call_at(when, self._timed_out)

    def _cancel_timer(self) -> None:
        self._due = None  # the timer, if set, finds nothing due when it fires

    def _drop_timer(self) -> None:
        self._due = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        due = self._due
        if due is None or self.transport.is_closing():
            return
        now = self.loop.time()
        if due - now > 0.001:  # moved later since the timer was set
            self._timer = self.loop.call_at(due, self._timed_out)
            return
        self._due = None
        if self._phase == "head":
            if self._began:
                self._refuse(408, "header-timeout")
            else:  # nothing sent at all: no one to answer
                self.guard.on_refusal("idle-timeout")
                self.transport.close()
        elif self._phase == "body":
            if now >= self._deadline:
                self._refuse(408, "request-deadline")
                return
            if self.flow.read_paused:  # the application is behind, not the client
                self._arm(min(now + self.guard.limits.body_timeout_s, self._deadline))
                return
            due = min(self._last_read + self.guard.limits.body_timeout_s, self._deadline)
            if now >= due:
                self._refuse(408, "body-timeout")
            else:
                self._arm(due)

    def _refuse(self, status: int, reason: str) -> None:
        """Answer `status` (when no response has started) and close the connection."""
        self._drop_timer()
        self.guard.on_refusal(reason)
        if self.cycle is None or self.cycle.response_complete or not self.cycle.response_started:
            body = f'{{"error":"{reason}"}}'.encode()
            self.transport.write(
                STATUS_LINE[status]
                + b"content-type: application/json\r\ncontent-length: "
                + str(len(body)).encode()
                + b"\r\nconnection: close\r\n\r\n"
                + body
            )
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True  # the application reads a disconnect; its answer goes nowhere
            self.cycle.message_event.set()
        self.transport.close()
