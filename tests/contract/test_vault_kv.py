"""VaultClient's KV version 2 against a real OpenBao dev server (see tests/fixtures/vault.py):
versions, metadata, destroy, check-and-set, listing, reading every value, and calls kept off the event loop.

Every test works under its own `vault_prefix`, so the tests share the session's server without seeing
each other.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import UTC, datetime

import hvac
import pytest
import requests
from pydantic import SecretStr

from tests.fixtures.vault import OpenBao, assert_no_leak, secret_value
from waguard.vault.client import VaultClient
from waguard.vault.errors import VaultCasConflict, VaultSecretNotFound

# -- KV version 2 -------------------------------------------------------------------------------


async def test_write_returns_the_new_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/app-secret"
    assert await vault.write_secret(path, secret_value()) == 1
    assert await vault.write_secret(path, secret_value()) == 2


async def test_read_current_and_a_given_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/token"
    first, second = secret_value(), secret_value()
    await vault.write_secret(path, first)
    await vault.write_secret(path, second)

    current = await vault.read_secret(path)
    assert (current.path, current.version) == (path, 2)
    assert current.value.get_secret_value() == second.get_secret_value()
    assert current.created_time.tzinfo is not None and current.created_time.utcoffset().total_seconds() == 0

    old = await vault.read_secret(path, version=1)
    assert old.version == 1 and old.value.get_secret_value() == first.get_secret_value()
    assert second.get_secret_value() not in repr(current)


async def test_read_another_key(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/pin"
    await vault.write_secret(path, SecretStr("123456"), key="pin")
    assert (await vault.read_secret(path, key="pin")).value.get_secret_value() == "123456"
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path)  # key "value" is not there
    assert err.value.reason == "no such key" and err.value.key == "value"


async def test_metadata_lists_versions_with_times(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/rotated"
    before = datetime.now(UTC).replace(microsecond=0)
    for _ in range(3):
        await vault.write_secret(path, secret_value())

    meta = await vault.read_metadata(path)
    assert meta.path == path and meta.current_version == 3
    assert sorted(meta.versions) == [1, 2, 3]
    assert meta.created_time >= before and meta.updated_time >= meta.created_time
    assert meta.versions[1].created_time <= meta.versions[2].created_time <= meta.versions[3].created_time
    assert all(v.readable and v.deletion_time is None and not v.destroyed for v in meta.versions.values())
    assert meta.created_time == meta.versions[1].created_time


async def test_destroyed_version_is_gone_and_the_current_one_stays(
        vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/leaked"
    leaked, fresh = secret_value(), secret_value()
    await vault.write_secret(path, leaked)
    await vault.write_secret(path, fresh)

    await vault.destroy_versions(path, [1])

    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path, version=1)
    assert (err.value.path, err.value.version, err.value.reason) == (path, 1, "destroyed")
    assert path in str(err.value) and "destroyed" in str(err.value)
    assert_no_leak(err.value, leaked.get_secret_value(), fresh.get_secret_value())
    assert (await vault.read_secret(path)).value.get_secret_value() == fresh.get_secret_value()
    meta = await vault.read_metadata(path)
    assert meta.versions[1].destroyed and not meta.versions[1].readable and meta.versions[2].readable
    assert await vault.secret_exists(path)

    await vault.destroy_versions(path, [2])
    assert not await vault.secret_exists(path)


async def test_missing_secret_and_version(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/never-written"
    assert not await vault.secret_exists(path)
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path)
    assert err.value.reason == "absent" and path in str(err.value)
    with pytest.raises(VaultSecretNotFound):
        await vault.read_metadata(path)

    await vault.write_secret(path, secret_value())
    assert await vault.secret_exists(path)
    with pytest.raises(VaultSecretNotFound) as err:
        await vault.read_secret(path, version=7)
    assert (err.value.version, err.value.reason) == (7, "absent")


async def test_check_and_set(vault: VaultClient, vault_prefix: str) -> None:
    path = f"{vault_prefix}/cas"
    first, late = secret_value(), secret_value()
    assert await vault.write_secret(path, first, cas=0) == 1  # cas=0: create only
    with pytest.raises(VaultCasConflict) as err:
        await vault.write_secret(path, late, cas=0)
    assert (err.value.path, err.value.cas) == (path, 0)
    assert_no_leak(err.value, first.get_secret_value(), late.get_secret_value())

    assert await vault.write_secret(path, secret_value(), cas=1) == 2
    with pytest.raises(VaultCasConflict):
        await vault.write_secret(path, late, cas=1)  # someone else wrote version 2 meanwhile
    assert (await vault.read_metadata(path)).current_version == 2


async def test_list_paths_is_recursive(vault: VaultClient, vault_prefix: str) -> None:
    names = ("meta/app-secret", "meta/tokens/system-user", "slack/bot-token", "top")
    for name in names:
        await vault.write_secret(f"{vault_prefix}/{name}", secret_value())

    assert await vault.list_paths(vault_prefix) == sorted(f"{vault_prefix}/{n}" for n in names)
    assert await vault.list_paths(f"{vault_prefix}/meta/") == [
        f"{vault_prefix}/meta/app-secret", f"{vault_prefix}/meta/tokens/system-user"]
    assert await vault.list_paths(f"{vault_prefix}/nothing-here") == []


async def test_read_all_secret_values_covers_old_versions_and_all_keys(
        vault: VaultClient, vault_prefix: str, openbao: OpenBao) -> None:
    old, new, other, destroyed = (secret_value() for _ in range(4))
    await vault.write_secret(f"{vault_prefix}/meta/app-secret", old)
    await vault.write_secret(f"{vault_prefix}/meta/app-secret", new)
    await vault.write_secret(f"{vault_prefix}/slack/gone", destroyed)
    await vault.destroy_versions(f"{vault_prefix}/slack/gone", [1])
    # A secret with several keys, written the way an operator might with the CLI.
    await asyncio.to_thread(vault.hvac_client.secrets.kv.v2.create_or_update_secret,
                            f"{vault_prefix}/slack/app",
                            secret={"signing_secret": other.get_secret_value(), "team": "T0TEAM"})

    values = await vault.read_all_secret_values([f"{vault_prefix}/", f"{vault_prefix}/absent"])
    got = {v.get_secret_value() for v in values}
    assert got == {old.get_secret_value(), new.get_secret_value(), other.get_secret_value(), "T0TEAM"}
    assert len(values) == len(got)

    only = await vault.read_all_secret_values([f"{vault_prefix}/meta/app-secret"])
    assert {v.get_secret_value() for v in only} == {old.get_secret_value(), new.get_secret_value()}


# -- the event loop -----------------------------------------------------------------------------


async def test_calls_run_off_the_event_loop(openbao: OpenBao, vault: VaultClient, vault_prefix: str) -> None:
    """Two reads are in flight at once, in worker threads, while another coroutine keeps running.

    Each read's HTTP response is held in a hook until both requests have reached Vault: if the
    client ran hvac on the loop thread, or one call at a time, the barrier would break instead.
    """
    await vault.write_secret(f"{vault_prefix}/a", SecretStr("A"))
    await vault.write_secret(f"{vault_prefix}/b", SecretStr("B"))
    loop_thread = threading.get_ident()
    threads: set[int] = set()
    both_in_flight = threading.Barrier(2, timeout=30)

    def hold(response: requests.Response, *args: object, **kwargs: object) -> requests.Response:
        threads.add(threading.get_ident())
        both_in_flight.wait()
        return response

    session = requests.Session()
    session.hooks["response"].append(hold)
    client = VaultClient(hvac.Client(url=openbao.addr, token=openbao.root_token.get_secret_value(),
                                     session=session))
    events: list[str] = []
    stop = asyncio.Event()

    async def ticker() -> None:
        while not stop.is_set():
            events.append("tick")
            await asyncio.sleep(0)

    async def read(name: str) -> str:
        value = (await client.read_secret(f"{vault_prefix}/{name}")).value.get_secret_value()
        events.append(f"read {name}")
        return value

    ticking = asyncio.create_task(ticker())
    try:
        assert await asyncio.gather(read("a"), read("b")) == ["A", "B"]
    finally:
        stop.set()
        await ticking
        client.close()

    assert len(threads) == 2 and loop_thread not in threads
    first_read = min(events.index("read a"), events.index("read b"))
    assert "tick" in events[:first_read]
