"""On the local stack, each waguard process reaches Vault as its own AppRole identity, and the
intake's secret id is rotated while it keeps running.

Vault says who logged in: the tokens it issued (listed by accessor with the root token) carry their
AppRole role name, policies and creation time. (OpenBao 2 refuses to enable an audit device through
the API, so the tokens are the evidence.)
"""

import asyncio
import time

import httpx
import pytest

from flows.leaked_secret import leaked_secret
from waguard.local.identities import identity_dir
from waguard.vault.client import VaultClient
from waguard.vault.identities import credential_files, role_name, rotate_secret_id

pytestmark = pytest.mark.usefixtures("local_stack")


def logins_since(root: VaultClient, since: float) -> dict[str, list[list[str]]]:
    """{role name: [policies of each token it got]} for AppRole logins at or after `since`."""
    hv = root.hvac_client
    found: dict[str, list[list[str]]] = {}
    for accessor in hv.auth.token.list_accessors()["data"]["keys"]:
        try:
            data = hv.auth.token.lookup_accessor(accessor)["data"]
        except Exception:  # noqa: BLE001 - revoked between the list and the lookup
            continue
        role = (data.get("meta") or {}).get("role_name")
        if role and data["creation_time"] >= int(since):
            found.setdefault(role, []).append(sorted(data["policies"]))
    return found


async def test_a_run_logs_in_as_playbook_and_signs_evidence_as_evidence(local_stack) -> None:  # type: ignore[no-untyped-def]
    since = time.time() - 1
    result = await leaked_secret(incident_id="INC-ROLES", plan=True)
    assert result["status"] == "planned"
    async with VaultClient.from_settings(local_stack.settings.vault) as root:
        logins = await asyncio.to_thread(logins_since, root, since)
    assert ["default", role_name("playbook")] in logins.get(role_name("playbook"), []), logins
    assert ["default", role_name("evidence")] in logins.get(role_name("evidence"), []), logins


async def test_the_intake_takes_a_new_secret_id_without_a_restart(local_stack) -> None:  # type: ignore[no-untyped-def]
    settings = local_stack.settings
    role_file, secret_file = credential_files(identity_dir(settings), "intake")
    old = secret_file.read_text()
    intake = next(c for c in local_stack.stack._children if c.name == "intake service")
    pid = intake.proc.pid
    async with VaultClient.from_settings(settings.vault) as root:
        hv = root.hvac_client
        destroyed = await asyncio.to_thread(rotate_secret_id, hv, role_name("intake"), secret_file)
        assert destroyed >= 1 and secret_file.read_text() != old
        # End every AppRole token now, as their expiry would: the intake must log in again, with the new id.
        since = time.time()
        await asyncio.to_thread(hv.sys.revoke_prefix, "auth/approle/login")
        with pytest.raises(Exception):  # noqa: B017 - the old secret id is gone
            await asyncio.to_thread(lambda: hv.auth.approle.login(
                role_id=role_file.read_text(), secret_id=old, use_token=False))
        deadline = time.monotonic() + 60
        while role_name("intake") not in await asyncio.to_thread(logins_since, root, since):
            assert time.monotonic() < deadline, "the intake never logged in again"
            httpx.get(f"{local_stack.stack.urls.intake}/readyz")  # past its 1 s cache, a probe reads Vault
            await asyncio.sleep(0.3)
    r = httpx.get(f"{local_stack.stack.urls.intake}/readyz")
    assert r.status_code == 200, r.text
    assert intake.proc.pid == pid and intake.proc.poll() is None
