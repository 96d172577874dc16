"""The intake's secret cache re-reads a secret when a signature fails against an old read, at most once a
second (waguard.intake.keys.SecretCache.refresh_stale)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from pydantic import SecretStr

from waguard.intake.keys import SecretCache
from waguard.vault.models import VersionedSecret


class Vault:
    """An in-memory KV store with versions, counting reads."""

    def __init__(self) -> None:
        self.versions: dict[str, list[str]] = {}
        self.reads = 0

    def write(self, path: str, value: str) -> None:
        self.versions.setdefault(path, []).append(value)

    async def read_secret(self, path: str, *, key: str = "value",
                          version: int | None = None) -> VersionedSecret:
        self.reads += 1
        values = self.versions[path]
        n = version or len(values)
        return VersionedSecret(path=path, version=n, created_time=datetime.now(UTC),
                               value=SecretStr(values[n - 1]))


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_secret_rotated_after_the_read_is_seen_after_a_failed_signature_not_after_the_ttl() -> None:
    vault, clock = Vault(), Clock()
    vault.write("app", "old")
    cache = SecretCache(vault, clock, ttl_s=5)

    async def current() -> str:
        return (await cache.values("app"))[0].get_secret_value()

    assert asyncio.run(current()) == "old"
    vault.write("app", "new")  # rotated; Meta signs with it from now on
    clock.now += 1.5
    assert asyncio.run(current()) == "old"  # inside the TTL
    assert cache.refresh_stale() is True  # what a failed signature does
    assert asyncio.run(current()) == "new"


def test_failed_signatures_re_read_at_most_once_a_second() -> None:
    vault, clock = Vault(), Clock()
    vault.write("app", "secret")
    cache = SecretCache(vault, clock, ttl_s=5)
    asyncio.run(cache.values("app"))
    reads = vault.reads
    for _ in range(1000):  # a forged flood inside one second: nothing is stale yet
        assert cache.refresh_stale() is False
        asyncio.run(cache.values("app"))
        clock.now += 0.0009
    assert vault.reads == reads
    clock.now += 0.2
    assert cache.refresh_stale() is True
    asyncio.run(cache.values("app"))
    assert vault.reads == reads + 1


def test_a_pinned_version_is_kept() -> None:
    vault, clock = Vault(), Clock()
    vault.write("app", "v1")
    vault.write("app", "v2")
    cache = SecretCache(vault, clock, ttl_s=5)
    asyncio.run(cache.get("app", 1))
    clock.now += 2
    reads = vault.reads
    cache.refresh_stale()
    asyncio.run(cache.get("app", 1))
    assert vault.reads == reads
