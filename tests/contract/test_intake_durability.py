"""An alert answered 2xx is never lost, even when the intake is killed right after answering.

The store commits the deliveries of one event-loop turn together (group commit, store.py) and a
delivery is answered only once its group's commit returned. Here the intake runs as in production
(uvicorn, httptools, the connection guard) in a child process; alerts sent at once share commits;
the moment the last answer is read the child is SIGKILLed, and its SQLite file is read: every alert
answered 200 is there, incident and nonce. In-process: deliveries arriving together share a commit,
and one refused inside a group leaves the others' writes and none of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, am_headers, am_notification, dumps, fresh_secrets, write_secrets
from waguard.intake.store import IntakeStore
from waguard.local.processes import free_port, wait_until_ok
from waguard.vault.client import VaultClient

intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
ALERTS = 48
T = 1_764_000_000.0
CHILD = """
import sys
from pathlib import Path
import uvicorn
from tests.fixtures.intake import RecordingRuns, intake_settings
from waguard.intake.app import create_app
from waguard.intake.server import server_config
from waguard.intake.starter import RecordingStarter
from waguard.settings import VaultSettings
from waguard.vault.client import VaultClient
port, prefix, state, addr, token_file = sys.argv[1:]
cfg = intake_settings(prefix, Path(state))
vault = VaultClient.from_settings(VaultSettings(addr=addr, auth_method="token", token_file=Path(token_file)))
app = create_app(cfg, vault, RecordingStarter(), runs=RecordingRuns())
uvicorn.Server(server_config(app, "127.0.0.1", int(port), cfg)).run()
"""


async def post_all(port: int, bodies: list[bytes], token: str) -> list[tuple[int, dict]]:
    """Each body on a connection of its own, all sent before any answer is awaited."""
    head = "".join(f"{k}: {v}\r\n" for k, v in am_headers(token).items())

    async def one(body: bytes) -> tuple[int, dict]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(f"POST /alerts/alertmanager HTTP/1.1\r\nHost: intake\r\n{head}"
                     f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        raw = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in raw.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        answer = await reader.readexactly(length)
        writer.close()
        return int(raw.split(b" ", 2)[1]), json.loads(answer)

    return await asyncio.gather(*(one(b) for b in bodies))


def test_alerts_answered_200_survive_a_sigkill_right_after_the_answers(
    openbao, vault_prefix: str, tmp_path: Path
) -> None:
    s = fresh_secrets()
    state = tmp_path / "intake"
    cfg = fx.intake_settings(vault_prefix, state)
    vault = VaultClient.from_settings(openbao.settings)
    try:
        asyncio.run(write_secrets(vault, cfg, s))
    finally:
        vault.close()
    port = free_port()
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(port), vault_prefix, str(state), openbao.settings.addr,
         str(openbao.settings.token_file)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_until_ok(f"http://127.0.0.1:{port}/healthz", 60, service="intake", alive=child)
        warm = httpx.post(f"http://127.0.0.1:{port}/alerts/alertmanager",
                          headers=am_headers(s.alertmanager_token),
                          content=dumps(am_notification(group="Warm", waba="1")), timeout=30)
        assert warm.status_code == 200  # secrets cached: the alerts below arrive together
        bodies = [dumps(am_notification(group=f"Durable{n}", waba=str(7000 + n))) for n in range(ALERTS)]
        answers = asyncio.run(post_all(port, bodies, s.alertmanager_token))
        child.send_signal(signal.SIGKILL)  # at once: no shutdown, no last checkpoint
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(timeout=30)
    assert [status for status, _ in answers] == [200] * ALERTS
    answered = {i["incident_key"] for _, body in answers for i in body["incidents"]}
    assert len(answered) == ALERTS
    with contextlib.closing(sqlite3.connect(state / "intake.sqlite3")) as db:
        stored = {row[0] for row in db.execute("SELECT incident_id FROM incidents")}
        nonces = {row[0] for row in db.execute("SELECT key FROM nonce_log WHERE live = 1")}
    assert answered <= stored
    assert {f"alertmanager:{hashlib.sha256(b).hexdigest()}" for b in bodies} <= nonces


async def test_deliveries_arriving_together_share_a_commit(intake: Harness) -> None:
    await fx.post_am(intake, am_notification(group="Warm", waba="1"))  # secrets cached
    store = intake.service.store
    before = store.commits
    answers = await asyncio.gather(*(
        fx.post_am(intake, am_notification(group=f"Together{n}", waba=str(8000 + n))) for n in range(20)))
    assert [r.status_code for r in answers] == [200] * 20
    assert store.commits - before < 20
    assert store.incident_count() == 21


async def test_a_unit_that_fails_inside_a_group_is_undone_alone(tmp_path: Path) -> None:
    store = IntakeStore(tmp_path / "intake.sqlite3")
    build = lambda generation: (f"inc-{generation}", {})  # noqa: E731
    try:
        committed = store.group()
        with store.transaction():
            assert store.remember("a", now=T, ttl_s=60)
            store.claim("key-a", "template_abuse", now=T, quiet_s=60, build=build)
        with pytest.raises(RuntimeError), store.transaction():  # e.g. a 422 after its nonce was written
            assert store.remember("b", now=T, ttl_s=60)
            store.claim("key-b", "template_abuse", now=T, quiet_s=60, build=lambda g: ("inc-b", {}))
            raise RuntimeError("refused")
        with store.transaction():
            assert store.remember("c", now=T, ttl_s=60)
        assert store.group() is committed  # one group for the whole loop turn
        await committed
    finally:
        store.close()
    reopened = IntakeStore(tmp_path / "intake.sqlite3")
    try:
        assert reopened.incident_count() == 1
        assert not reopened.remember("a", now=T, ttl_s=60) and not reopened.remember("c", now=T, ttl_s=60)
        assert reopened.remember("b", now=T, ttl_s=60)  # undone: a retry is judged afresh
    finally:
        reopened.close()
