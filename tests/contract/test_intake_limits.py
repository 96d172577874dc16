"""Slow and oversized clients meet the intake's HTTP limits, over raw sockets on loopback.

The intake runs as it does in production (uvicorn, httptools, the connection guard from
`service.server_config`) with small limits so each case is reached quickly; every case waits for the
server's answer or close, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.fixtures.intake import (
    RecordingRuns,
    am_headers,
    am_notification,
    dumps,
    fresh_secrets,
    intake_settings,
    write_secrets,
)
from waguard.intake.app import create_app
from waguard.intake.server import server_config
from waguard.intake.starter import RecordingStarter
from waguard.local.processes import free_port
from waguard.vault.client import VaultClient

LIMITS = dict(
    max_header_bytes=4096, max_headers=16, header_timeout_s=0.5, body_timeout_s=0.5, request_timeout_s=1.5
)
WAIT_S = 20.0  # how long a test waits for the server to act before it fails (never a pass condition)


@dataclass
class Served:
    port: int
    token: str
    starter: RecordingStarter
    metrics_text: object

    def connect(self) -> socket.socket:
        s = socket.create_connection(("127.0.0.1", self.port))
        s.settimeout(WAIT_S)
        return s

    def post_alert(self, n: int) -> httpx.Response:
        body = dumps(am_notification(group=f"Limits{n}", waba=str(900 + n)))
        return httpx.post(
            f"http://127.0.0.1:{self.port}/alerts/alertmanager",
            content=body,
            headers=am_headers(self.token),
            timeout=WAIT_S,
        )


def serve(openbao, vault_prefix: str, tmp_path: Path, **limits: object) -> Iterator[Served]:
    vault = VaultClient.from_settings(openbao.settings)
    s = fresh_secrets()
    cfg = intake_settings(vault_prefix, tmp_path / "intake", **limits)
    asyncio.run(write_secrets(vault, cfg, s))
    starter = RecordingStarter()
    app = create_app(cfg, vault, starter, runs=RecordingRuns())
    port = free_port()
    server = uvicorn.Server(server_config(app, "127.0.0.1", port, cfg))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + WAIT_S
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the intake did not start"
        time.sleep(0.01)
    try:
        yield Served(port, s.alertmanager_token, starter, lambda: app.state.intake.metrics.render().decode())
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        vault.close()


@pytest.fixture
def served(openbao, vault_prefix: str, tmp_path: Path) -> Iterator[Served]:
    yield from serve(openbao, vault_prefix, tmp_path, **LIMITS, max_connections=16)


def answer(s: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


def status(raw: bytes) -> int:
    return int(raw.split(b" ", 2)[1])


def head(extra: str = "", length: int | None = None) -> bytes:
    lines = ["POST /alerts/alertmanager HTTP/1.1", "Host: intake", "Content-Type: application/json"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n" + extra).encode()


def test_an_oversized_head_is_refused_before_it_is_buffered(served: Served) -> None:
    with served.connect() as s:
        s.sendall(head("X-Big: "))
        sent, refused = 0, b""
        try:
            while sent < 32 * 1_048_576:  # the server must refuse long before 32 MiB
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        refused = answer(s)
    assert status(refused) == 431 and b"header-too-large" in refused
    assert sent < 32 * 1_048_576  # cut off: the rest was never taken


def test_too_many_header_fields_are_refused(served: Served) -> None:
    fields = "".join(f"X-F{i}: v\r\n" for i in range(40))
    with served.connect() as s:
        s.sendall(head(fields + "\r\n", length=2) + b"{}")
        raw = answer(s)
    assert status(raw) == 431 and b"too-many-headers" in raw


def test_a_silent_connection_is_closed(served: Served) -> None:
    with served.connect() as s:
        assert answer(s) == b""  # closed without a word: nothing was asked


def test_half_a_head_gets_408(served: Served) -> None:
    with served.connect() as s:
        s.sendall(head("X-Half: "))
        raw = answer(s)
    assert status(raw) == 408 and b"header-timeout" in raw


def test_half_a_body_gets_408_and_starts_nothing(served: Served) -> None:
    with served.connect() as s:
        s.sendall(head(f"Authorization: Bearer {served.token}\r\n\r\n", length=500) + b'{"receiver":')
        raw = answer(s)
    assert status(raw) == 408 and b"body-timeout" in raw
    assert served.starter.starts == []


def test_a_trickle_is_cut_off_by_the_request_deadline(served: Served) -> None:
    """One byte at a time, each well inside the body timeout: the whole-request deadline ends it."""
    sent = 0
    with served.connect() as s:
        s.sendall(head(f"Authorization: Bearer {served.token}\r\n\r\n", length=10_000))
        try:
            while sent < 10_000:
                s.sendall(b" ")
                sent += 1
                time.sleep(LIMITS["body_timeout_s"] / 5)  # type: ignore[operator]
                s.setblocking(False)
                try:
                    if s.recv(1, socket.MSG_PEEK):
                        break
                except BlockingIOError:
                    pass
                finally:
                    s.setblocking(True)
                    s.settimeout(WAIT_S)
        except (BrokenPipeError, ConnectionResetError):
            pass
        raw = answer(s)
    assert status(raw) == 408 and b"request-deadline" in raw
    assert sent < 10_000


def test_held_connections_beyond_the_cap_do_not_lock_out_an_alert(served: Served) -> None:
    idle = [served.connect() for _ in range(40)]  # cap is 16: the oldest idle ones are closed
    try:
        r = served.post_alert(1)
        assert r.status_code == 200 and r.json()["outcome"] == "started"
        closed = 0
        for s in idle[:24]:
            if answer(s) == b"":
                closed += 1
        assert closed == 24
        assert 'reason="evicted-idle"' in served.metrics_text()  # type: ignore[operator]
    finally:
        for s in idle:
            s.close()


def test_a_new_connection_is_refused_when_every_slot_is_mid_request(
    openbao, vault_prefix: str, tmp_path: Path
) -> None:
    slow = {**LIMITS, "body_timeout_s": 60.0, "request_timeout_s": 120.0}
    for served in serve(openbao, vault_prefix, tmp_path, **slow, max_connections=16):
        busy = [served.connect() for _ in range(16)]
        try:
            for s in busy:  # each in the middle of a body, so not evictable
                expect = f"Authorization: Bearer {served.token}\r\nExpect: 100-continue\r\n\r\n"
                s.sendall(head(expect, length=100) + b"{")
                # "100 Continue" is sent when the application reads the body: the head was parsed
                assert s.recv(64).startswith(b"HTTP/1.1 100")
            with served.connect() as extra:
                raw = answer(extra)
            assert status(raw) == 503
            assert 'reason="connection-cap"' in served.metrics_text()  # type: ignore[operator]
        finally:
            for s in busy:
                s.close()


@pytest.mark.slow
def test_an_alert_is_answered_while_1000_idle_connections_are_held(
    openbao, vault_prefix: str, tmp_path: Path
) -> None:
    for served in serve(openbao, vault_prefix, tmp_path, header_timeout_s=60.0):  # default cap (1024)
        idle = [served.connect() for _ in range(1000)]
        try:
            r = served.post_alert(2)
            assert r.status_code == 200 and r.json()["outcome"] == "started"
            assert all(s.fileno() >= 0 for s in idle)
        finally:
            for s in idle:
                s.close()


def one_answer(s: socket.socket) -> bytes:
    """One response on a connection kept open (its head, then Content-Length bytes)."""
    raw = b""
    while b"\r\n\r\n" not in raw:
        raw += s.recv(65536)
    top, _, rest = raw.partition(b"\r\n\r\n")
    length = next(int(v) for k, _, v in (line.partition(b":") for line in top.split(b"\r\n"))
                  if k.strip().lower() == b"content-length")
    while len(rest) < length:
        rest += s.recv(65536)
    return top + b"\r\n\r\n" + rest


@pytest.mark.parametrize(("after", "reason"), [("head", b"header-timeout"), ("body", b"body-timeout")])
def test_limits_hold_for_the_next_request_on_a_kept_connection(
    served: Served, after: str, reason: bytes
) -> None:
    """A connection's timer is moved lazily from request to request: a slow request after a quick
    one on the same connection is still cut off."""
    body = dumps(am_notification(group="KeptConn", waba="911"))
    auth = f"Authorization: Bearer {served.token}\r\n"
    with served.connect() as s:
        for _ in range(3):
            s.sendall(head(auth + "\r\n", length=len(body)) + body)
            assert status(one_answer(s)) == 200
        if after == "head":
            s.sendall(head("X-Half: "))
        else:
            s.sendall(head(auth + "\r\n", length=500) + b'{"receiver":')
        raw = answer(s)
    assert status(raw) == 408 and reason in raw
