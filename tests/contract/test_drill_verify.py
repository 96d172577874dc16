"""Every check of the drill's Verifier can fail (issue 11 item 6).

Each runs against the Meta simulator as a real HTTP server and a real OpenBao, in the world a drill
seeds before the signal (`reset_world`): containment did NOT happen, so every check about the end state
must fail, and must still fail when Graph answers 500 (a 500 is not a refusal). Positive controls show
the Graph-probing checks can pass, so their failures above are not trivial.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.meta import MetaSim
from tests.fixtures.vault import OpenBao
from tests.support.runs import until
from waguard.drills.scenario import Expectation, load_scenarios
from waguard.drills.scheduled import ConsumerTally, consume
from waguard.drills.verify import NEEDS_IDS, CheckResult, Verifier
from waguard.drills.world import World, reset_world
from waguard.local.stack import MESSAGING_SYSTEM_USER, MESSAGING_TOKEN_PATH, StackUrls
from waguard.meta.errors import MetaPermissionDenied, MetaTokenInvalid, MetaTransient
from waguard.settings import IntakeSettings, MetaSettings, Settings
from waguard.vault.client import VaultClient

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
DRILLS = RUNBOOKS / "drills"
SCENARIOS = load_scenarios(DRILLS)
# The checks about the end state. templates_present (no collateral damage) and nothing_changed (a
# storm of forgeries started nothing) hold in an untouched world by design: each is tested below
# against the world in which it must fail.
HOLD_WHEN_UNTOUCHED = ("templates_present", "nothing_changed")
END_STATE = [(s.name, e) for s in SCENARIOS.values() for e in s.expect if e.check not in HOLD_WHEN_UNTOUCHED]
EVERY_GRAPH_CALL_FAILS = {"kind": "http5xx", "seconds": 600}


@pytest.fixture
async def setup(meta_sim: MetaSim, openbao: OpenBao, vault: VaultClient, vault_prefix: str,
                tmp_path: Path) -> tuple[Settings, StackUrls]:
    settings = Settings(
        meta=MetaSettings(graph_url=meta_sim.url, token_path=f"{vault_prefix}/meta/token",
                          app_secret_path=f"{vault_prefix}/meta/app-secret", ledger_path=tmp_path / "ledger"),
        intake=IntakeSettings(public_url="http://127.0.0.1:8730", state_dir=tmp_path / "intake",
                              rotation_window_path=f"{vault_prefix}/rotation-window"),
        vault=openbao.settings, incidents_dir=tmp_path / "incidents", runbooks_dir=RUNBOOKS)
    await vault.write_secret(settings.meta.token_path, meta_sim.token)
    await vault.write_secret(settings.meta.app_secret_path, meta_sim.app_secret)
    # Nothing listens on port 9: a check that asks the intake gets no answer, never a 200.
    urls = StackUrls(prefect_ui="-", prefect_api="-", vault=openbao.addr, meta=meta_sim.url, slack="-",
                     intake="http://127.0.0.1:9")
    return settings, urls


async def verify(setup: tuple[Settings, StackUrls], vault: VaultClient, world: World,
                 expect: list[Expectation], consumer: ConsumerTally | None = None) -> dict[str, CheckResult]:
    settings, urls = setup
    results = await Verifier(settings, urls, vault, world, consumer=consumer).run(expect)
    return {r.check: r for r in results}


@pytest.mark.parametrize("faulted", [False, True], ids=["graph-ok", "graph-500"])
@pytest.mark.parametrize(("scenario", "expectation"), END_STATE, ids=[f"{n}-{e.check}" for n, e in END_STATE])
async def test_each_check_fails_when_containment_did_not_happen(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim,
        scenario: str, expectation: Expectation, faulted: bool) -> None:
    settings, urls = setup
    world = await reset_world(settings, urls, vault, SCENARIOS[scenario])
    if faulted:
        meta_sim.admin.post("/_sim/faults", json=EVERY_GRAPH_CALL_FAILS).raise_for_status()
    result = (await verify(setup, vault, world, [expectation]))[expectation.check]
    assert not result.ok, result.detail


async def test_templates_present_fails_when_a_template_was_wrongly_deleted(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim) -> None:
    settings, urls = setup
    scenario = SCENARIOS["template-spike"]
    expect = [e for e in scenario.expect if e.check == "templates_present"]
    world = await reset_world(settings, urls, vault, scenario)
    assert (await verify(setup, vault, world, expect))["templates_present"].ok  # nothing deleted yet
    victim = meta_sim.sim.templates[expect[0].ids[0]]
    async with meta_sim.client() as graph:
        await graph.delete_template(meta_sim.waba_id, victim.id, victim.name)
    assert not (await verify(setup, vault, world, expect))["templates_present"].ok


async def test_nothing_changed_fails_once_a_mutating_graph_call_landed(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim) -> None:
    settings, urls = setup
    scenario = next(s for s in SCENARIOS.values() if any(e.check == "nothing_changed" for e in s.expect))
    expect = [Expectation(check="nothing_changed")]
    world = await reset_world(settings, urls, vault, scenario)
    assert (await verify(setup, vault, world, expect))["nothing_changed"].ok  # nothing acted yet
    async with meta_sim.client() as graph:
        await graph.deregister_phone_number(meta_sim.number_id)
    assert not (await verify(setup, vault, world, expect))["nothing_changed"].ok


async def test_a_check_without_ids_fails_instead_of_passing_vacuously(
        setup: tuple[Settings, StackUrls], vault: VaultClient) -> None:
    settings, urls = setup
    world = await reset_world(settings, urls, vault, SCENARIOS["template-spike"])
    results = await verify(setup, vault, world, [Expectation(check=c) for c in sorted(NEEDS_IDS)])  # type: ignore[arg-type]
    assert all(not results[c].ok for c in NEEDS_IDS)


async def test_attacker_locked_out_needs_metas_refusal_not_a_500(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim) -> None:
    settings, urls = setup
    scenario = SCENARIOS["bm-takeover"]
    expect = [Expectation(check="attacker_locked_out")]
    world = await reset_world(settings, urls, vault, scenario)
    # The attacker still has access; Graph answers 500 once per attacker token: not a refusal.
    meta_sim.admin.post("/_sim/faults", json={"kind": "http5xx", "count": len(world.attacker_tokens)})
    result = (await verify(setup, vault, world, expect))["attacker_locked_out"]
    assert not result.ok and "MetaTransient" in result.detail
    # Containment happens: the attacker is removed from the WABA and the business. Now Meta refuses.
    async with meta_sim.client() as graph:
        for uid in scenario.attacker.tokens_for:
            await graph.remove_assigned_user(meta_sim.waba_id, uid)
            await graph.remove_business_user(uid)
    result = (await verify(setup, vault, world, expect))["attacker_locked_out"]
    assert result.ok, result.detail


async def test_app_secret_rotated_needs_the_proof_refusal_not_a_500(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim) -> None:
    settings, urls = setup
    expect = [Expectation(check="app_secret_rotated")]
    world = await reset_world(settings, urls, vault, SCENARIOS["github-app-secret-leak"])
    # Vault holds a new secret the responder typed in, but Meta was never reset: not rotated.
    await vault.write_secret(settings.meta.app_secret_path, SecretStr("f" * 32))
    assert not (await verify(setup, vault, world, expect))["app_secret_rotated"].ok
    # Meta reset, Vault holds the new secret: rotated.
    new = meta_sim.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    await vault.write_secret(settings.meta.app_secret_path, SecretStr(new))
    assert (await verify(setup, vault, world, expect))["app_secret_rotated"].ok
    # The old secret's probe meets a 500 instead of Meta's refusal: that proves nothing.
    meta_sim.admin.post("/_sim/faults", json={"kind": "http5xx", "count": 1})
    result = (await verify(setup, vault, world, expect))["app_secret_rotated"]
    assert not result.ok and "unknown (MetaTransient)" in result.detail


def test_only_metas_own_codes_count_as_a_refusal() -> None:
    from waguard.drills.verify import credential_refused, proof_refused
    from waguard.meta.errors import MetaInvalidRequest

    assert credential_refused(MetaTokenInvalid("gone", http_status=400, code=190))
    assert credential_refused(MetaPermissionDenied("no", http_status=403, code=200))
    assert credential_refused(MetaPermissionDenied("no", http_status=403, code=10))
    assert not credential_refused(MetaTokenInvalid("proxy", http_status=401))  # no Graph envelope
    assert not credential_refused(MetaTransient("boom", http_status=500, code=2))
    assert proof_refused(MetaInvalidRequest("Invalid appsecret_proof provided in the API argument", code=100))
    assert not proof_refused(MetaInvalidRequest("(#100) Param fields must be non-empty", code=100))
    assert not proof_refused(MetaTransient("boom", http_status=500, code=2))


SIXTY_DAYS_S = 60 * 86400
WA_SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


async def test_tokens_young_fails_until_vault_holds_a_valid_young_expiring_token(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim) -> None:
    settings, urls = setup
    expect = [Expectation(check="tokens_young", ids=[MESSAGING_TOKEN_PATH])]
    world = await reset_world(settings, urls, vault, SCENARIOS["token-past-90-days"])
    # Seeded: 95 days old and never expiring, and nothing rotated it.
    result = (await verify(setup, vault, world, expect))["tokens_young"]
    assert not result.ok and "expires_at=0" in result.detail, result.detail
    # A fresh token that never expires is no better (Meta's 60-day tokens are the policy).
    forever = meta_sim.sim.issue_token(MESSAGING_SYSTEM_USER, WA_SCOPES)
    await vault.write_secret(MESSAGING_TOKEN_PATH, SecretStr(forever.value))
    assert not (await verify(setup, vault, world, expect))["tokens_young"].ok
    # Rotated: a new 60-day token in Vault.
    young = meta_sim.sim.issue_token(MESSAGING_SYSTEM_USER, WA_SCOPES, lifetime_s=SIXTY_DAYS_S)
    await vault.write_secret(MESSAGING_TOKEN_PATH, SecretStr(young.value))
    result = (await verify(setup, vault, world, expect))["tokens_young"]
    assert result.ok, result.detail
    # ...unless it was revoked: young but dead.
    meta_sim.sim.revoke_token(young.id)
    assert not (await verify(setup, vault, world, expect))["tokens_young"].ok


@pytest.mark.parametrize("order", ["revoke-then-write", "write-then-revoke"])
async def test_consumer_no_failed_calls_fails_when_the_old_token_died_before_the_consumer_moved_on(
        setup: tuple[Settings, StackUrls], vault: VaultClient, meta_sim: MetaSim, order: str) -> None:
    """The real consumer, reading Vault before each Graph call, through a rotation done in either order:
    revoking before Vault holds the successor (no grace window) must fail the check; writing first and
    revoking once the consumer uses the new version must pass it."""
    settings, urls = setup
    expect = [Expectation(check="consumer_no_failed_calls")]
    world = await reset_world(settings, urls, vault, SCENARIOS["token-past-90-days"])
    assert not (await verify(setup, vault, world, expect))["consumer_no_failed_calls"].ok  # no consumer
    tally, stop = ConsumerTally(), asyncio.Event()
    task = asyncio.create_task(consume(settings, vault, MESSAGING_TOKEN_PATH, stop, tally, pause_s=0.01))
    try:
        await until(lambda: tally.ok >= 2, "the consumer's first calls")
        new = meta_sim.sim.issue_token(MESSAGING_SYSTEM_USER, WA_SCOPES, lifetime_s=SIXTY_DAYS_S)
        if order == "revoke-then-write":
            meta_sim.sim.revoke_token("tok-messaging-service")
            await until(lambda: tally.failed >= 1, "a failed call with the revoked token")
            written = await vault.write_secret(MESSAGING_TOKEN_PATH, SecretStr(new.value))
        else:
            written = await vault.write_secret(MESSAGING_TOKEN_PATH, SecretStr(new.value))
            await until(lambda: written in tally.versions, "the consumer on the new version")
            meta_sim.sim.revoke_token("tok-messaging-service")
        ok_before = tally.ok
        await until(lambda: tally.ok > ok_before + 1, "calls with the new token")
    finally:
        stop.set()
        await task
    result = (await verify(setup, vault, world, expect, consumer=tally))["consumer_no_failed_calls"]
    assert result.ok == (order == "write-then-revoke"), result.detail
    assert len(tally.versions) == 2 and tally.error is None
