"""The Business Manager steps against the Meta simulator, without a playbook around them (issue 12 item 4).

The demo business: admins Ana (6000000001) and Ben (6000000002), employee Eve (6000000003, assigned to
the WABA), and waguard's system user (7000000001, assigned). The look-alike overrides are tested in
test_containment_overrides.py; here the other branches of reset_overrides.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.steps import StepWorld, ThenChange, step_world
from waguard.meta.simulator.seed import SubscribedAppSeed
from waguard.steps.business import remove_unknown_users, reset_overrides
from waguard.steps.report import VerificationFailed
from waguard.vault.client import VaultClient

ADMINS, EVE, SYSTEM_USER = ["6000000001", "6000000002"], "6000000003", "7000000001"
OURS = "https://intake.example.com"
FOREIGN = "https://attacker.example.net/hook"


@pytest.fixture
async def world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> StepWorld:
    return await step_world(meta_sim, openbao, vault, vault_prefix, tmp_path)


async def test_remove_unknown_users_removes_the_stranger_and_keeps_our_system_user(
        world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        report = await remove_unknown_users(ports, world.effects(), meta_sim.business_id, meta_sim.waba_id, ADMINS)
    assert sorted(report.acted) == [f"assignment:{EVE}", f"user:{EVE}"] and report.verified
    assert EVE not in meta_sim.sim.business_users
    assert sorted(meta_sim.sim.assignments[meta_sim.waba_id]) == [*ADMINS, SYSTEM_USER]
    assert world.done_targets("remove-unknown-users") == [f"waba:{meta_sim.waba_id}/user:{EVE}", EVE]


async def test_remove_unknown_users_again_is_already_done(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        await remove_unknown_users(ports, world.effects(), meta_sim.business_id, meta_sim.waba_id, ADMINS)
        again = await remove_unknown_users(ports, world.effects(), meta_sim.business_id, meta_sim.waba_id, ADMINS)
    assert again.acted == [] and again.already == [meta_sim.business_id] and again.verified


async def test_remove_unknown_users_in_plan_mode_records_and_removes_nobody(
        world: StepWorld, meta_sim: MetaSim) -> None:
    fx = world.effects(plan=True)
    async with world.ports() as ports:
        report = await remove_unknown_users(ports, fx, meta_sim.business_id, meta_sim.waba_id, ADMINS)
    assert report.acted == [] and not report.verified and EVE in meta_sim.sim.business_users
    assert [(c.target, c.call) for c in fx.planned] == [
        (f"waba:{meta_sim.waba_id}/user:{EVE}", f"DELETE /v23.0/{meta_sim.waba_id}/assigned_users (user)"),
        (EVE, f"DELETE /v23.0/{EVE}")]


async def test_remove_unknown_users_raises_when_the_stranger_is_back_at_the_read_back(
        world: StepWorld, meta_sim: MetaSim) -> None:
    eve = meta_sim.sim.business_users[EVE].model_copy(deep=True)

    def invited_again() -> None:  # the attacker, still holding an admin session, re-adds Eve
        with meta_sim.sim.lock:
            meta_sim.sim.business_users[EVE] = eve

    race = ThenChange("DELETE", f"/{EVE}", invited_again)
    async with world.ports(race) as ports:
        with pytest.raises(VerificationFailed, match=EVE):
            await remove_unknown_users(ports, world.effects(), meta_sim.business_id, meta_sim.waba_id, ADMINS)
    assert race.fired


def override(meta_sim: MetaSim, uri: str | None) -> None:
    app = meta_sim.seed.subscribed_apps[0]
    meta_sim.sim.reset(meta_sim.seed.model_copy(update={"subscribed_apps": [
        SubscribedAppSeed(waba_id=app.waba_id, app_id=app.app_id, app_name=app.app_name,
                          override_callback_uri=uri)]}))


async def test_reset_overrides_with_no_override_is_already_done(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        report = await reset_overrides(ports, world.effects(), meta_sim.waba_id, OURS)
    assert report.acted == [] and report.already == [meta_sim.waba_id] and report.verified


async def test_reset_overrides_in_plan_mode_records_and_leaves_the_override(
        world: StepWorld, meta_sim: MetaSim) -> None:
    override(meta_sim, FOREIGN)
    fx = world.effects(plan=True)
    async with world.ports() as ports:
        report = await reset_overrides(ports, fx, meta_sim.waba_id, OURS)
    assert report.acted == [] and not report.verified
    assert [s.override_callback_uri for s in meta_sim.sim.subscriptions[meta_sim.waba_id].values()] == [FOREIGN]
    assert [c.call for c in fx.planned] == [f"DELETE /v23.0/{meta_sim.waba_id}/subscribed_apps",
                                            f"POST /v23.0/{meta_sim.waba_id}/subscribed_apps"]


async def test_reset_overrides_raises_when_the_override_is_set_again(world: StepWorld, meta_sim: MetaSim) -> None:
    override(meta_sim, FOREIGN)

    def set_again() -> None:
        with meta_sim.sim.lock:
            for sub in meta_sim.sim.subscriptions[meta_sim.waba_id].values():
                sub.override_callback_uri = FOREIGN

    race = ThenChange("POST", f"/{meta_sim.waba_id}/subscribed_apps", set_again)
    async with world.ports(race) as ports:
        with pytest.raises(VerificationFailed, match="foreign override"):
            await reset_overrides(ports, world.effects(), meta_sim.waba_id, OURS)
    assert race.fired


async def test_reset_overrides_raises_when_no_subscription_is_left(world: StepWorld, meta_sim: MetaSim) -> None:
    override(meta_sim, FOREIGN)

    def unsubscribed_meanwhile() -> None:
        with meta_sim.sim.lock:
            meta_sim.sim.subscriptions[meta_sim.waba_id].clear()

    race = ThenChange("POST", f"/{meta_sim.waba_id}/subscribed_apps", unsubscribed_meanwhile)
    async with world.ports(race) as ports:
        with pytest.raises(VerificationFailed, match="no subscription"):
            await reset_overrides(ports, world.effects(), meta_sim.waba_id, OURS)
