"""The scheduled hygiene steps against the real parts: the Meta simulator over HTTP and OpenBao.

Rotation: a token past its age is replaced by a 60-day one in Vault; a consumer that reads Vault keeps
working through the grace window (the replaced token stays valid until it ends) and after it; the
replaced token is dead afterwards. The grace window runs on the injected `now`: no real waiting.
Posture: the untouched demo business reads clean; a planted admin is found with how long they held access.
"""

from __future__ import annotations

import secrets
import time
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.meta import MetaSim
from waguard.local.stack import MESSAGING_SYSTEM_USER, with_messaging_service
from waguard.meta.client import GraphClient
from waguard.meta.simulator.seed import BusinessUserSeed
from waguard.playbook.effects import Effects
from waguard.playbook.hygiene_policy import Ages, ManagedToken, load_hygiene_policy
from waguard.playbook.ports import Ports
from waguard.playbook.timeline import IncidentRecord
from waguard.settings import IntakeSettings, MetaSettings, Settings
from waguard.steps import posture
from waguard.steps.rotation import DAY_S, due_revocations, revoke_replaced, rotate_token

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
AGES = Ages()
GRACE_S = 3600


@pytest.fixture
async def world(meta_sim: MetaSim, openbao, vault, vault_prefix: str, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The demo business with the messaging service; its token never expires and is 95 days old."""
    messaging = "EAAG" + secrets.token_urlsafe(48).replace("-", "x").replace("_", "y")
    seed = with_messaging_service(meta_sim.seed, messaging)
    old = int(time.time() - 95 * DAY_S)
    seed.tokens[-1].issued_at, seed.tokens[-1].expires_at = old, 0
    meta_sim.sim.reset(seed)
    settings = Settings(meta=MetaSettings(graph_url=meta_sim.url, token_path=f"{vault_prefix}/system-user-token",
                                          app_secret_path=f"{vault_prefix}/app-secret", retry_budget_s=0),
                        vault=openbao.settings, intake=IntakeSettings(state_dir=tmp_path / "intake"),
                        runbooks_dir=RUNBOOKS, incidents_dir=tmp_path / "incidents")
    await vault.write_secret(settings.meta.token_path, meta_sim.token)
    await vault.write_secret(settings.meta.app_secret_path, meta_sim.app_secret)
    managed = ManagedToken(path=f"{vault_prefix}/messaging-token", system_user_id=MESSAGING_SYSTEM_USER,
                           scopes=["whatsapp_business_management", "whatsapp_business_messaging"])
    await vault.write_secret(managed.path, SecretStr(messaging))
    graph = GraphClient.from_settings(settings.meta, token=meta_sim.token, app_secret=meta_sim.app_secret)
    ports = Ports(settings, vault, graph, None)  # type: ignore[arg-type]  # these steps post nothing
    fx = Effects(False, IncidentRecord(tmp_path / "incidents", "hygiene-test"), settings.meta.graph_version)
    yield ports, fx, managed, SecretStr(messaging), meta_sim.sim
    await graph.aclose()


async def consumer_call(ports: Ports, path: str, token: SecretStr | None = None) -> bool:
    """A consumer's Graph call with what Vault holds now (or a token it cached earlier)."""
    token = token or (await ports.vault.read_secret(path)).value
    secret = (await ports.vault.read_secret(ports.settings.meta.app_secret_path)).value
    client = GraphClient.from_settings(ports.settings.meta, token=token, app_secret=secret)
    try:
        await client.list_phone_numbers(ports.settings.meta.waba_id)
        return True
    except Exception:  # noqa: BLE001 - any failure is a failed consumer call
        return False
    finally:
        await client.aclose()


async def test_a_token_past_its_age_is_replaced_and_the_old_one_dies_only_after_the_grace_window(world) -> None:  # type: ignore[no-untyped-def]
    ports, fx, managed, old, _ = world
    t0 = time.time()
    assert await consumer_call(ports, managed.path)
    rotated = await rotate_token(ports, fx, managed, AGES, GRACE_S, t0)
    assert rotated.report.verified and rotated.report.acted == [f"{managed.path}: never expires"]
    new = (await ports.vault.read_secret(managed.path)).value
    info = await ports.graph.debug_token(new)
    assert info.is_valid and info.expires_at - info.issued_at == 60 * DAY_S  # Meta's 60-day token
    pending = rotated.pending
    assert pending is not None and pending.not_before == t0 + GRACE_S and pending.version == 1
    # Inside the grace window: the new token works for readers of Vault, and the old one still works
    # for a consumer that has not reloaded yet.
    assert due_revocations([pending], t0 + GRACE_S - 1) == []
    assert await consumer_call(ports, managed.path) and await consumer_call(ports, managed.path, old)
    assert (await ports.graph.debug_token(old)).is_valid
    # The grace window has ended: revoke exactly the replaced token, verified dead; Vault's still works.
    [due] = due_revocations([pending], t0 + GRACE_S)
    report = await revoke_replaced(ports, fx, due)
    assert report.verified and report.acted == [f"{managed.path} v1"]
    assert not (await ports.graph.debug_token(old)).is_valid
    assert await consumer_call(ports, managed.path) and not await consumer_call(ports, managed.path, old)
    # Run again: nothing is due, nothing changes.
    again = await rotate_token(ports, fx, managed, AGES, GRACE_S, time.time())
    assert again.report.already == [managed.path] and again.pending is None
    assert (await revoke_replaced(ports, fx, due)).already == [f"{managed.path} v1"]


async def test_the_demo_business_reads_clean_and_a_planted_admin_is_found_with_their_access_time(world) -> None:  # type: ignore[no-untyped-def]
    ports, fx, managed, _, state = world
    base = load_hygiene_policy(RUNBOOKS)
    own = ManagedToken(path=ports.settings.meta.token_path, system_user_id="7000000001",
                       scopes=["whatsapp_business_management"])
    fresh = SecretStr(f"{secrets.randbelow(10**6):06d}")
    await ports.vault.write_secret(base.pin_path + "-" + managed.path.split("/")[1], fresh)
    policy = base.model_copy(update={"managed_tokens": [managed, own],
                                     "pin_path": base.pin_path + "-" + managed.path.split("/")[1]})
    await rotate_token(ports, fx, managed, AGES, 0, time.time())  # the planted old token: now a young one
    now = time.time()
    reads = await posture.read_posture(ports, policy, now)
    assert posture.findings(reads, policy, ports.settings.intake.public_url, now) == []
    with state.lock:  # an admin added five days ago, with no alert (the simulator's state, as drift)
        state.business_users["6000000009"] = BusinessUserSeed(
            id="6000000009", name="Mallory Moss", email="m@mail.example", role="ADMIN", added_time=int(now - 5 * DAY_S))
    reads = await posture.read_posture(ports, policy, now)
    found = posture.findings(reads, policy, ports.settings.intake.public_url, now)
    assert [(f.kind, f.target) for f in found] == [("unknown_admin", "6000000009")]
    assert "access for 5 d" in found[0].detail
    assert reads.calls >= 8  # users, system users, subscriptions, numbers, templates, 2 tokens, a log per user

