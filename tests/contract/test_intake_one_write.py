"""The public server sends a response's head with its body (server._OneWrite); a head with no body
(HEAD) still goes out, and the connection goes on to the next request. Over a real socket, served
as in production (tests/contract/test_intake_limits.py's server)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.contract.test_intake_limits import LIMITS, Served, serve

pytestmark = pytest.mark.slow


@pytest.fixture
def served(openbao, vault_prefix: str, tmp_path: Path) -> Iterator[Served]:
    yield from serve(openbao, vault_prefix, tmp_path, **LIMITS, max_connections=16)




def test_a_head_request_is_answered_and_the_connection_serves_the_next(served: Served) -> None:
    with served.connect() as s:
        s.sendall(b"HEAD /healthz HTTP/1.1\r\nHost: intake\r\n\r\n")
        data = b""
        while b"\r\n\r\n" not in data:
            data += s.recv(65536)
        head, _, after = data.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and after == b""
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: intake\r\n\r\n")
        data = b""
        while not data.endswith(b'{"status":"ok"}'):
            chunk = s.recv(65536)
            assert chunk, "the connection closed before the second answer"
            data += chunk
        assert data.startswith(b"HTTP/1.1 200")


def test_an_alert_answer_comes_whole(served: Served) -> None:
    r = served.post_alert(1)
    assert r.status_code == 200 and r.json()["outcome"] == "started"
