"""Posture findings: each rule on what an audit reads, and none on the clean demo business."""

from __future__ import annotations

from pathlib import Path

from waguard.intake.posture_gauges import latest_counts
from waguard.meta.models import GranularScope, TokenInfo
from waguard.playbook.hygiene_policy import load_hygiene_policy
from waguard.steps.posture import (
    KINDS,
    PostureReads,
    as_dicts,
    digest,
    findings,
    link_allowed,
    markdown,
    template_urls,
)
from waguard.steps.rotation import DAY_S

POLICY = load_hygiene_policy(Path(__file__).resolve().parents[2] / "runbooks")
NOW = 1_800_000_000.0
INTAKE = "http://127.0.0.1:8730"
WABA = "3000000001"


def token(issued_days_ago: float = 1, lifetime_days: float | None = 60, wabas=(WABA,)) -> TokenInfo:  # type: ignore[no-untyped-def]
    issued = int(NOW - issued_days_ago * DAY_S)
    return TokenInfo(is_valid=True, issued_at=issued, expires_at=int(issued + lifetime_days * DAY_S) if lifetime_days else 0,
                     granular_scopes=[GranularScope(scope="whatsapp_business_messaging", target_ids=list(wabas))])


def clean() -> PostureReads:
    """What the audit reads from the untouched demo business."""
    return PostureReads(
        business_users=[{"id": "6000000001", "name": "Ana Alves", "role": "ADMIN", "access_since": None},
                        {"id": "6000000002", "name": "Ben Brooks", "role": "ADMIN", "access_since": None},
                        {"id": "6000000003", "name": "Eve Evans", "role": "EMPLOYEE", "access_since": None}],
        system_users=["7000000001", "7000000002"],
        subscriptions=[{"waba_id": WABA, "app_id": "1000000001", "override": None}],
        numbers=[{"id": "4000000001", "verified_name": "Jasper's Market", "override": None},
                 {"id": "4000000002", "verified_name": "Jasper's Market", "override": None},
                 {"id": "4000000003", "verified_name": "Jasper's Ice Cream", "override": None}],
        new_templates=[{"id": "5000000001", "name": "order_update", "language": "en_US",
                        "urls": ["https://shop.jaspers-market.example/o/{{1}}"]}],
        tokens={"meta/messaging-token": token(), "meta/system-user-token": token()},
        pin_written_at=NOW - DAY_S, app_secret_written_at=NOW - DAY_S)


def kinds(reads: PostureReads) -> list[tuple[str, str]]:
    return [(f.kind, f.target) for f in findings(reads, POLICY, INTAKE, NOW)]


def test_the_clean_demo_business_has_no_finding() -> None:
    assert kinds(clean()) == []


def test_an_unknown_admin_is_critical_and_says_how_long_they_had_access() -> None:
    reads = clean()
    reads.business_users.append({"id": "6000000009", "name": "Mallory Moss", "role": "ADMIN",
                                 "access_since": NOW - 5 * DAY_S})
    reads.business_users.append({"id": "6000000010", "name": "Vic Vendor", "role": "EMPLOYEE", "access_since": None})
    found = findings(reads, POLICY, INTAKE, NOW)
    assert [(f.kind, f.target, f.severity) for f in found] == [
        ("unknown_admin", "6000000009", "critical"), ("unknown_user", "6000000010", "high")]
    assert "access for 5 d" in found[0].detail


def test_a_known_user_promoted_beyond_their_role_is_critical() -> None:
    reads = clean()
    reads.business_users[2]["role"] = "ADMIN"
    assert kinds(reads) == [("role_escalated", "6000000003")]


def test_unknown_system_users_apps_and_foreign_overrides() -> None:
    reads = clean()
    reads.system_users.append("7000000099")
    reads.subscriptions.append({"waba_id": WABA, "app_id": "1999999999", "override": None})
    reads.subscriptions[0]["override"] = "https://hooks.attacker.example/wa"
    reads.numbers[0]["override"] = f"{INTAKE}/webhooks/whatsapp"  # ours: fine
    reads.numbers[1]["override"] = "http://127.0.0.1:87301/x"  # not a URL we could trust
    assert sorted(kinds(reads)) == [("foreign_override", "number:4000000002"), ("foreign_override", f"waba:{WABA}"),
                                    ("unknown_app", "1999999999"), ("unknown_system_user", "7000000099")]


def test_tokens_past_age_never_expiring_or_scoped_outside_the_inventory() -> None:
    reads = clean()
    reads.tokens = {"a": token(95, lifetime_days=None), "b": token(wabas=(WABA, "3999999999")),
                    "c": TokenInfo(is_valid=False)}
    assert sorted(kinds(reads)) == [("token_foreign_scope", "b"), ("token_invalid", "c"),
                                    ("token_never_expires", "a"), ("token_past_age", "a")]


def test_new_templates_linking_outside_the_allow_list() -> None:
    components = [{"type": "BODY", "text": "Verify at https://jaspers-market-verify.example/x now"},
                  {"type": "BUTTONS", "buttons": [{"type": "URL", "url": "https://evil.example/{{1}}"},
                                                  {"type": "URL", "url": "https://www.jaspers-market.example/a"}]}]
    urls = template_urls(components)
    assert urls == ["https://jaspers-market-verify.example/x", "https://evil.example/{{1}}",
                    "https://www.jaspers-market.example/a"]
    assert [u for u in urls if not link_allowed(u, ["jaspers-market.example"])] == urls[:2]
    reads = clean()
    reads.new_templates.append({"id": "5000000099", "name": "verify", "language": "en_US", "urls": urls})
    assert kinds(reads) == [("template_foreign_link", "5000000099")]


def test_display_name_changes_and_old_pin_and_app_secret() -> None:
    reads = clean()
    reads.numbers[1]["verified_name"] = "Jasper's Marketplace Support"
    reads.pin_written_at = NOW - 61 * DAY_S
    reads.app_secret_written_at = None
    assert sorted(kinds(reads)) == [("app_secret_past_age", "app-secret"), ("display_name_changed", "4000000002"),
                                    ("pin_past_age", "4000000001"), ("pin_past_age", "4000000002"),
                                    ("pin_past_age", "4000000003")]


def test_digest_tells_a_changed_set_and_counts_cover_every_kind() -> None:
    reads = clean()
    assert digest(findings(reads, POLICY, INTAKE, NOW)) == digest([])
    reads.system_users.append("7000000099")
    found = findings(reads, POLICY, INTAKE, NOW)
    assert digest(found) != digest([])
    counts = latest_counts({"findings": as_dicts(found)})
    assert set(counts) == set(KINDS.items()) and counts[("unknown_system_user", "high")] == 1
    assert sum(counts.values()) == 1
    assert "| high | unknown_system_user | `7000000099` |" in markdown(found, __import__("datetime").datetime.now(), "2")
