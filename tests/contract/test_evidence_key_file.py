"""Every bundle refreshes the evidence public-key file. On the scaled profile several runs (separate
processes) write bundles at once: each refresh must succeed whatever the others do (a shared temporary
file name made one run's rename find its file already renamed by another: FileNotFoundError, run Failed,
seen in bench/scale.py)."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from tests.fixtures.vault import OpenBao
from waguard.evidence import export_public_keys
from waguard.vault.client import VaultClient

KEY = "waguard-evidence"


def test_concurrent_refreshes_of_the_key_file_all_succeed(openbao: OpenBao, tmp_path: Path) -> None:
    path = tmp_path / "evidence" / f"{KEY}.pub.pem"
    failures: list[BaseException] = []

    def writer() -> None:
        async def refresh_many() -> None:
            client = VaultClient.from_settings(openbao.settings)
            try:
                for _ in range(40):
                    await export_public_keys(client, KEY, path)
            finally:
                client.close()

        try:
            asyncio.run(refresh_many())
        except BaseException as err:  # noqa: BLE001  (reported below, with every other writer's)
            failures.append(err)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    alone = asyncio.run(_export_once(openbao, tmp_path / "alone.pem"))
    assert path.read_text() == alone.read_text()  # the whole file, as one writer alone writes it
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left behind


async def _export_once(openbao: OpenBao, path: Path) -> Path:
    client = VaultClient.from_settings(openbao.settings)
    try:
        return await export_public_keys(client, KEY, path)
    finally:
        client.close()
