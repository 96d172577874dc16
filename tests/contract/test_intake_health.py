"""Readiness tells the truth: with OpenBao sealed the intake is alive but not ready, and says why.

A dev server of this module's own is sealed (the session's shared one stays up for everything else).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fixtures.intake import (
    FakeClock,
    RecordingRuns,
    am_headers,
    am_notification,
    dumps,
    fresh_secrets,
    intake_settings,
    write_secrets,
)
from waguard.intake.app import create_app
from waguard.intake.starter import RecordingStarter
from waguard.local.processes import free_port
from waguard.settings import VaultSettings
from waguard.vault import devserver
from waguard.vault.client import VaultClient
from waguard.vault.outage import seal, sealed, unseal

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, Path]]:
    home = tmp_path_factory.mktemp("intake-sealable-openbao")
    root, port = secrets.token_urlsafe(24), free_port()
    key_file = home / "unseal-key"
    server = devserver.dev_server(
        port=port, root_token=root, log_path=home / "openbao.log", unseal_key_file=key_file
    )
    server.start()
    token_file = home / "vault-token"
    token_file.write_text(root)
    token_file.chmod(0o600)
    try:
        yield f"http://127.0.0.1:{port}", root, token_file, key_file
    finally:
        server.stop()


async def test_sealed_vault_fails_readiness_naming_it(bao, tmp_path: Path) -> None:
    addr, root, token_file, key_file = bao
    vault = VaultClient.from_settings(VaultSettings(addr=addr, auth_method="token", token_file=token_file))
    settings = intake_settings("h1", tmp_path / "intake")
    s = fresh_secrets()
    await write_secrets(vault, settings, s)
    clock = FakeClock()
    app = create_app(settings, vault, RecordingStarter(), clock, runs=RecordingRuns())
    body = dumps(am_notification())
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://i") as client:
            assert (await client.get("/readyz")).status_code == 200
            await asyncio.to_thread(seal, addr, root)
            try:
                app.state.intake.readiness._last = None  # the 1 s result cache: ask again now
                r = await client.get("/readyz")
                assert r.status_code == 503
                assert r.json()["status"] == "not-ready" and r.json()["failing"] == ["vault"]
                assert r.json()["checks"]["store"] == "ok"
                assert (await client.get("/healthz")).status_code == 200  # alive all the same
                clock.advance(60)  # past the secret cache's short TTL
                d = await client.post(
                    "/alerts/alertmanager", content=body, headers=am_headers(s.alertmanager_token)
                )
                assert d.status_code == 503  # what readiness said
            finally:
                if await asyncio.to_thread(sealed, addr):
                    await asyncio.to_thread(unseal, addr, key_file.read_text().strip())
            app.state.intake.readiness._last = None
            r = await client.get("/readyz")
            assert r.status_code == 200 and r.json()["failing"] == []
    finally:
        await app.state.intake.aclose()
        vault.close()
