"""The template steps against the Meta simulator, without a playbook around them (issue 12 item 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.steps import StepWorld, ThenChange, step_world
from waguard.steps.report import VerificationFailed
from waguard.steps.templates import delete_templates, find_templates
from waguard.vault.client import VaultClient

SPAM, PHISH, DISABLED = "5000000005", "5000000008", "5000000007"  # the demo seed's


@pytest.fixture
async def world(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> StepWorld:
    return await step_world(meta_sim, openbao, vault, vault_prefix, tmp_path)


async def test_find_templates_applies_every_filter_given(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        by_name = await find_templates(ports.graph, meta_sim.waba_id, names=["spring_sale"])
        by_reason = await find_templates(ports.graph, meta_sim.waba_id, statuses=["DISABLED"], reasons=["SCAM"])
        both = await find_templates(ports.graph, meta_sim.waba_id, names=["spring_sale"], statuses=["APPROVED"])
    assert sorted(t.id for t in by_name) == [SPAM, "5000000006"]
    assert [t.id for t in by_reason] == [DISABLED] and [t.id for t in both] == [SPAM]


async def test_delete_removes_the_offending_templates_and_verifies_they_are_gone(
        world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["spring_sale", "account_security_notice"],
                                       statuses=["APPROVED"])
        report = await delete_templates(ports, world.effects(), meta_sim.waba_id, targets)
    assert sorted(report.acted) == [SPAM, PHISH] and report.already == [] and report.failed == {}
    assert report.verified and SPAM not in meta_sim.sim.templates and PHISH not in meta_sim.sim.templates
    assert "5000000006" in meta_sim.sim.templates  # the other language of the name stays
    assert sorted(world.done_targets("delete-templates")) == [SPAM, PHISH]


async def test_delete_of_a_template_already_gone_is_already_done(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["account_security_notice"])
        await ports.graph.delete_template(meta_sim.waba_id, PHISH, "account_security_notice")
        report = await delete_templates(ports, world.effects(), meta_sim.waba_id, targets)
    assert report.acted == [] and report.already == [PHISH] and report.verified


async def test_a_disabled_template_is_reported_failed_and_not_attempted(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["winter_newsletter", "spring_sale"],
                                       statuses=["DISABLED", "APPROVED"])
        report = await delete_templates(ports, world.effects(), meta_sim.waba_id, targets)
    assert report.acted == [SPAM] and list(report.failed) == [DISABLED] and "DISABLED" in report.failed[DISABLED]
    assert report.verified and DISABLED in meta_sim.sim.templates
    deletes = [r for r in meta_sim.requests() if r["method"] == "DELETE"]
    assert len(deletes) == 1  # the DISABLED one was never sent


async def test_meta_refusing_a_delete_lands_in_the_failed_map(world: StepWorld, meta_sim: MetaSim) -> None:
    async with world.ports() as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["account_security_notice"])
        meta_sim.sim.templates[PHISH].status = "DISABLED"  # Meta disabled it after we listed it
        report = await delete_templates(ports, world.effects(), meta_sim.waba_id, targets)
    assert report.acted == [] and report.failed == {PHISH: "Meta error 100"}
    assert PHISH in meta_sim.sim.templates and world.done_targets("delete-templates") == []


async def test_delete_in_plan_mode_records_the_call_and_deletes_nothing(world: StepWorld, meta_sim: MetaSim) -> None:
    fx = world.effects(plan=True)
    async with world.ports() as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["account_security_notice"])
        report = await delete_templates(ports, fx, meta_sim.waba_id, targets)
    assert report.acted == [] and not report.verified and PHISH in meta_sim.sim.templates
    assert [(c.target, c.call) for c in fx.planned] == [
        (PHISH, f"DELETE /v23.0/{meta_sim.waba_id}/message_templates (hsm_id, name)")]


async def test_delete_raises_when_the_template_is_back_at_the_read_back(world: StepWorld, meta_sim: MetaSim) -> None:
    kept = meta_sim.sim.templates[PHISH].model_copy(deep=True)

    def delete_does_not_stick() -> None:
        with meta_sim.sim.lock:
            meta_sim.sim.templates[PHISH] = kept

    race = ThenChange("DELETE", f"/{meta_sim.waba_id}/message_templates", delete_does_not_stick)
    async with world.ports(race) as ports:
        targets = await find_templates(ports.graph, meta_sim.waba_id, names=["account_security_notice"])
        with pytest.raises(VerificationFailed, match=PHISH):
            await delete_templates(ports, world.effects(), meta_sim.waba_id, targets)
    assert race.fired
