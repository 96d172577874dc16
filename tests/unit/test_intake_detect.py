"""Meta webhook detection, table-driven on payloads shaped like Meta's reference examples
(message_template_status_update, account_update, security; alerts-and-slack.md §2.6)."""

from __future__ import annotations

import pytest

from waguard.intake.detect import MetaDelivery, detect
from waguard.intake.routing import MetaRouting

CFG = MetaRouting()
WABA = "102290129340398"


def delivery(*changes: tuple[str, dict], waba: str = WABA) -> MetaDelivery:
    return MetaDelivery.model_validate(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {"id": waba, "time": 1764000000, "changes": [{"field": f, "value": v} for f, v in changes]}
            ],
        }
    )


def template(event: str, reason: str | None = "NONE", name: str = "seasonal_promo") -> tuple[str, dict]:
    return (
        "message_template_status_update",
        {
            "event": event,
            "message_template_id": 806312974732579,
            "message_template_name": name,
            "message_template_language": "en_US",
            "reason": reason,
        },
    )


def starts(d: MetaDelivery, cfg: MetaRouting = CFG) -> list[tuple[str, str, str, dict]]:
    return [(s.playbook, s.key, s.severity, s.parameters) for s in detect(d, cfg).starts]


@pytest.mark.parametrize(
    ("event", "reason", "abuse"),
    [
        ("FLAGGED", None, True),
        ("PAUSED", None, True),
        ("DISABLED", None, True),
        ("REJECTED", "SCAM", True),
        ("REJECTED", "ABUSIVE_CONTENT", True),
        ("REJECTED", "INVALID_FORMAT", False),
        ("REJECTED", "INCORRECT_CATEGORY", False),
        ("APPROVED", "NONE", False),
        ("REINSTATED", None, False),
        ("PENDING_DELETION", None, False),
        ("SOMETHING_NEW", None, False),
    ],
)
def test_template_status_events(event, reason, abuse) -> None:
    got = starts(delivery(template(event, reason)))
    if abuse:
        assert got == [
            (
                "template_abuse",
                f"meta:{WABA}:template_abuse",
                "SEV2",
                {
                    "waba_id": WABA,
                    "template_names": ["seasonal_promo"],
                },
            )
        ]
    else:
        assert got == []


@pytest.mark.parametrize(
    ("field", "value", "takeover", "suspects"),
    [
        ("security", {"display_phone_number": "15550783881", "event": "PIN_CHANGED"}, True, []),
        (
            "security",
            {
                "display_phone_number": "15550783881",
                "event": "PIN_RESET_REQUEST",
                "requester": "2920898614779602",
            },
            True,
            ["2920898614779602"],
        ),
        ("security", {"display_phone_number": "15550783881", "event": "PIN_REQUEST_SUCCESS"}, False, []),
        (
            "account_update",
            {"event": "PARTNER_ADDED", "waba_info": {"waba_id": WABA, "owner_business_id": "1"}},
            True,
            [],
        ),
        ("account_update", {"event": "PARTNER_APP_INSTALLED"}, True, []),
        (
            "account_update",
            {"event": "ACCOUNT_VIOLATION", "violation_info": {"violation_type": "SPAM"}},
            False,
            [],
        ),
        ("account_update", {"event": "DISABLED_UPDATE"}, False, []),
        (
            "phone_number_quality_update",
            {"event": "FLAGGED", "display_phone_number": "15550783881"},
            False,
            [],
        ),
        ("messages", {"messages": [{"from": "15551234567", "text": {"body": "hi"}}]}, False, []),
    ],
)
def test_takeover_signals(field, value, takeover, suspects) -> None:
    got = starts(delivery((field, value)))
    if takeover:
        assert got == [
            (
                "account_takeover",
                f"meta:{WABA}:account_takeover",
                "SEV1",
                {"waba_id": WABA, "phone_number_ids": [], "suspect_users": suspects},
            )
        ]
    else:
        assert got == []


def test_phone_numbers_never_leave_the_payload_only_phone_number_ids() -> None:
    got = starts(
        delivery(
            (
                "security",
                {
                    "event": "PIN_CHANGED",
                    "display_phone_number": "+1 555 078 3881",
                    "phone_number_id": "106540352242922",
                    "requester": "+15550783881",
                },
            )
        )
    )
    params = got[0][3]
    assert params["phone_number_ids"] == ["106540352242922"] and params["suspect_users"] == []
    assert "555" not in repr(params).replace("106540352242922", "")


def test_a_batch_makes_one_start_per_waba_and_playbook() -> None:
    d = MetaDelivery.model_validate(
        {
            "object": "whatsapp_business_account",
            "entry": [
                {
                    "id": "1",
                    "changes": [
                        {"field": f, "value": v}
                        for f, v in [
                            template("FLAGGED", name="a"),
                            template("PAUSED", name="b"),
                            template("FLAGGED", name="a"),
                            ("security", {"event": "PIN_CHANGED"}),
                        ]
                    ],
                },
                {
                    "id": "2",
                    "changes": [
                        {"field": "message_template_status_update", "value": template("DISABLED")[1]}
                    ],
                },
                {"id": "not-a-waba", "changes": [{"field": "security", "value": {"event": "PIN_CHANGED"}}]},
            ],
        }
    )
    got = starts(d)
    assert [(p, k) for p, k, _, _ in got] == [
        ("account_takeover", "meta:1:account_takeover"),
        ("template_abuse", "meta:1:template_abuse"),
        ("template_abuse", "meta:2:template_abuse"),
    ]
    assert got[1][3] == {"waba_id": "1", "template_names": ["a", "b"]}  # events are not status filters


def test_policy_turns_detections_off_and_changes_lists() -> None:
    off = MetaRouting(template_abuse=None, account_takeover=None)
    assert starts(delivery(template("FLAGGED"), ("security", {"event": "PIN_CHANGED"})), off) == []
    strict = MetaRouting.model_validate({"template_abuse": {"statuses": ["LOCKED"], "rejected_reasons": []}})
    assert starts(delivery(template("FLAGGED")), strict) == []
    assert starts(delivery(template("LOCKED")), strict)[0][0] == "template_abuse"


def test_odd_values_are_tolerated() -> None:
    weird = delivery(
        ("message_template_status_update", {"event": 5, "message_template_name": ["x"]}),
        ("security", {"event": None}),
        ("account_update", {}),
    )
    assert starts(weird) == [] and detect(weird, CFG).notes
