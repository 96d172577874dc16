"""The signals detection/rules read, exported by the intake over HTTP: Meta webhook bodies built and signed
as the Meta simulator sends them, posted to /webhooks/whatsapp, then read back from /metrics.

Counted only once verified and first seen (a replay or a bad signature counts nothing but the refusal);
labels are ids and Meta's enum values (unknown ones as `other`), never the phone number; every metric
detection/metrics.md says the intake exports is exported; what playbook runs changed comes from the
incident timelines.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness
from waguard.intake.run_actions import STEP_ACTIONS
from waguard.meta.simulator import webhooks

intake = fx.intake


@pytest.fixture
async def intake_env(vault, vault_prefix: str, tmp_path: Path) -> fx.IntakeEnv:  # type: ignore[no-untyped-def]
    """The intake room's, with the incident timelines in the test's own directory: the scrape reads every
    timeline there, and the default (the session stack's WAGUARD_INCIDENTS_DIR once it started) also
    holds the flow tests' runs (a second-WABA takeover counted here when the flows ran first)."""
    settings = fx.intake_settings(vault_prefix, tmp_path / "intake")
    settings = settings.model_copy(update={"incidents_dir": tmp_path / "incidents"})
    s = fx.fresh_secrets()
    await fx.write_secrets(vault, settings, s)
    return fx.IntakeEnv(settings, s, vault, vault_prefix)


pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
WABA = "3000000001"  # the settings' WABA: known
NUMBER_ID = "4000000001"
DISPLAY = "+1 555 0100"


async def post(h: Harness, payload: dict[str, Any], *, secret: str | None = None, sign: bool = True):
    body = webhooks.encode(payload)
    headers = {"Content-Type": "application/json"}
    if sign:
        headers[webhooks.SIGNATURE_HEADER] = webhooks.signature(body, secret or h.env.secrets.app_secret)
    return await h.client.post("/webhooks/whatsapp", content=body, headers=headers)


async def scrape(h: Harness) -> tuple[str, dict[tuple[str, frozenset], float]]:
    r = await h.client.get("/metrics")
    assert r.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(r.text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    return r.text, samples


def value(samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def statuses(*items: dict[str, Any], waba: str = WABA, time: int = 1764000000) -> dict[str, Any]:
    return webhooks.envelope(
        waba,
        time,
        "messages",
        {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": DISPLAY, "phone_number_id": NUMBER_ID},
            "statuses": list(items),
        },
    )


def status(i: int, state: str, *, code: int | None = None, category: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"wamid.{i}",
        "status": state,
        "timestamp": "1764000000",
        "recipient_id": "15550101",
    }
    if category:
        item["pricing"] = {"billable": True, "pricing_model": "PMP", "category": category}
    if code:
        item["errors"] = [{"code": code, "title": "Spam Rate limit hit"}]
    return item


async def test_statuses_count_by_number_status_error_code_and_pricing(intake: Harness) -> None:
    r = await post(
        intake,
        statuses(
            status(1, "sent", category="marketing"),
            status(2, "sent", category="utility"),
            status(3, "delivered"),
            status(4, "read"),
            status(5, "failed", code=131048),
            status(6, "failed", code=130429),
            status(7, "warning"),
            status(8, "sent", category="brand_new_category"),
        ),
    )
    assert r.status_code == 200
    text, m = await scrape(intake)
    n = {"waba_id": WABA, "phone_number_id": NUMBER_ID}
    assert value(m, "waguard_meta_statuses_total", **n, status="sent", error_code="") == 3
    assert value(m, "waguard_meta_statuses_total", **n, status="failed", error_code="131048") == 1
    assert value(m, "waguard_meta_statuses_total", **n, status="failed", error_code="130429") == 1
    assert value(m, "waguard_meta_statuses_total", **n, status="other", error_code="") == 1
    assert value(m, "waguard_meta_sent_pricing_total", **n, category="marketing") == 1
    assert value(m, "waguard_meta_sent_pricing_total", **n, category="other") == 1
    names = without_values(text)  # a sample's value (a *_created timestamp) may spell 555 by chance
    assert "555" not in names and "15550101" not in names  # numbers are never labels


async def test_a_replayed_or_forged_delivery_counts_only_as_a_refusal(intake: Harness) -> None:
    payload = statuses(status(1, "sent"))
    assert (await post(intake, payload)).status_code == 200
    assert (await post(intake, payload)).status_code == 200  # Meta's retry: absorbed
    assert (await post(intake, statuses(status(2, "sent")), secret="0" * 32)).status_code == 401
    assert (await post(intake, statuses(status(3, "sent")), sign=False)).status_code == 401
    _, m = await scrape(intake)
    n = {"waba_id": WABA, "phone_number_id": NUMBER_ID}
    assert value(m, "waguard_meta_statuses_total", **n, status="sent", error_code="") == 1
    assert value(m, "waguard_intake_duplicates_absorbed_total", source="meta", kind="replay") == 1
    assert value(m, "waguard_intake_signature_failures_total", source="meta", reason="mismatch") == 1
    assert value(m, "waguard_intake_signature_failures_total", source="meta", reason="missing") == 1


async def test_account_template_and_security_fields_count_by_type(intake: Harness) -> None:
    t = 1764000000
    deliveries = [
        webhooks.message_template_status_update(
            WABA, time=t, event="PENDING", template_id=5000000021, name="flash_refund_1", language="en_US"
        ),
        webhooks.message_template_status_update(
            WABA,
            time=t + 1,
            event="SOMETHING_NEW",
            template_id=5000000022,
            name="Not A Valid Name!",
            language="en_US",
        ),
        webhooks.envelope(
            WABA,
            t,
            "message_template_quality_update",
            {
                "previous_quality_score": "GREEN",
                "new_quality_score": "RED",
                "message_template_id": 5000000021,
                "message_template_name": "flash_refund_1",
                "message_template_language": "en_US",
            },
        ),
        webhooks.envelope(
            WABA,
            t,
            "template_category_update",
            {
                "message_template_id": 5000000021,
                "message_template_name": "flash_refund_1",
                "message_template_language": "en_US",
                "previous_category": "UTILITY",
                "new_category": "MARKETING",
            },
        ),
        webhooks.account_update(
            WABA,
            time=t,
            event="PARTNER_ADDED",
            waba_info={"waba_id": WABA, "owner_business_id": "2000000001"},
        ),
        webhooks.security(WABA, time=t, event="PIN_CHANGED", display_phone_number=DISPLAY),
        webhooks.security(
            WABA, time=t + 1, event="PIN_RESET_REQUEST", display_phone_number=DISPLAY, requester="7000000001"
        ),
        webhooks.envelope(
            WABA,
            t,
            "account_alerts",
            {
                "entity_type": "BUSINESS",
                "entity_id": "2000000001",
                "alert_info": {
                    "alert_severity": "WARNING",
                    "alert_status": "ACTIVE",
                    "alert_type": "PROFILE_PICTURE_LOST",
                    "alert_description": "gone",
                },
            },
        ),
        webhooks.envelope(
            WABA,
            t,
            "phone_number_name_update",
            {
                "display_phone_number": DISPLAY,
                "decision": "APPROVED",
                "requested_verified_name": "Acme Support",
                "rejection_reason": None,
            },
        ),
        webhooks.envelope(
            "3999999999",
            t,
            "business_capability_update",
            {"max_daily_conversations_per_business": 2000, "max_phone_numbers_per_waba": 25},
        ),
    ]
    for payload in deliveries:
        assert (await post(intake, payload)).status_code == 200
    text, m = await scrape(intake)
    w = {"waba_id": WABA}
    assert (
        value(
            m,
            "waguard_meta_template_status_updates_total",
            **w,
            template_id="5000000021",
            template="flash_refund_1",
            event="PENDING",
        )
        == 1
    )
    assert (
        value(
            m,
            "waguard_meta_template_status_updates_total",
            **w,
            template_id="5000000022",
            template="other",
            event="other",
        )
        == 1
    )
    assert value(m, "waguard_meta_template_quality_updates_total", **w, new_quality="RED") == 1
    assert value(m, "waguard_meta_template_category_updates_total", **w, new_category="MARKETING") == 1
    assert value(m, "waguard_meta_account_updates_total", **w, event="PARTNER_ADDED") == 1
    assert value(m, "waguard_meta_security_events_total", **w, event="PIN_CHANGED") == 1
    assert value(m, "waguard_meta_security_events_total", **w, event="PIN_RESET_REQUEST") == 1
    assert (
        value(
            m,
            "waguard_meta_account_alerts_total",
            **w,
            entity_type="BUSINESS",
            alert_type="PROFILE_PICTURE_LOST",
        )
        == 1
    )
    assert value(m, "waguard_meta_phone_number_name_updates_total", **w, decision="APPROVED") == 1
    assert value(m, "waguard_meta_business_capability_updates_total", waba_id="3999999999") == 1
    # The rule "a WABA waguard does not know" joins on this.
    assert value(m, "waguard_known_waba_info", waba_id=WABA) == 1
    assert value(m, "waguard_known_waba_info", waba_id="3999999999") == 0
    for leaked in ("Acme Support", "555", "7000000001", "Not A Valid Name"):
        assert leaked not in without_values(text)


def without_values(exposition: str) -> str:
    """The exposition with each sample's value cut off: metric names, labels, HELP and TYPE lines."""
    return "\n".join(line if line.startswith("#") else line.rsplit(" ", 1)[0]
                     for line in exposition.splitlines())


def _append(h: Harness, incident: str, records: list[tuple[str, str, dict[str, Any]]]) -> None:
    from waguard.playbook.timeline import IncidentRecord

    record = IncidentRecord(h.env.settings.incidents_dir, incident)
    for step, outcome, data in records:
        record.append(step, outcome, data=data)


async def test_what_playbook_runs_changed_comes_from_the_timelines(intake: Harness) -> None:
    before = datetime.now(UTC).timestamp()
    _append(
        intake,
        "meta:3000000002:account_takeover",
        [
            ("open", "started", {"waba_id": "3000000002"}),
            (
                "new-two-step-pin",
                "done",
                {"acted": ["4000000009"], "already": [], "failed": {}, "verified": True},
            ),
            (
                "remove-unknown-users",
                "done",
                {"acted": [], "already": ["u1"], "failed": {}, "verified": True},
            ),
        ],
    )
    _append(
        intake,
        "manual-leak.plan",
        [  # a preview changed nothing
            ("open", "started", {"waba_id": "3000000003"}),
            ("revoke-token", "done", {"acted": ["meta/old"], "already": [], "failed": {}, "verified": True}),
        ],
    )
    _, m = await scrape(intake)
    got = {
        dict(k[1])["action"]: v
        for k, v in m.items()
        if k[0] == "waguard_playbook_action_last_seconds" and dict(k[1])["waba_id"] == "3000000002"
    }
    assert set(got) == {"pin_changed"}  # nothing acted on users: no user_removed
    assert before - 1 <= got["pin_changed"] <= datetime.now(UTC).timestamp() + 1
    assert not [
        k for k in m if k[0] == "waguard_playbook_action_last_seconds" and ("waba_id", "3000000003") in k[1]
    ]


def test_the_action_steps_are_steps_the_playbooks_record() -> None:
    sources = "\n".join(p.read_text() for p in (ROOT / "src/waguard/steps").glob("*.py"))
    recorded = set(re.findall(r'StepReport\(step="([a-z-]+)"', sources))
    assert set(STEP_ACTIONS) <= recorded


async def test_every_metric_detection_lists_for_the_intake_is_exported(intake: Harness) -> None:
    table = (ROOT / "detection/metrics.md").read_text()
    listed = {
        name
        for name, by in re.findall(r"^\| `([a-z_]+)` \|.*\| ([^|]+) \|$", table, re.M)
        if by.strip() == "intake"
    }
    text, _ = await scrape(intake)
    families = {f.name for f in text_string_to_metric_families(text)}
    # prometheus_client names a counter family without `_total`.
    assert {re.sub(r"_total$", "", n) for n in listed} <= families
