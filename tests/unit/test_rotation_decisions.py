"""Rotation decisions and the grace window, on an injected clock (no real waiting)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from waguard.meta.models import TokenInfo
from waguard.playbook.hygiene_policy import Ages, load_hygiene_policy
from waguard.steps.rotation import DAY_S, PendingRevocation, due_revocations, token_due, wait_until, written_due

AGES = Ages(rotate_after_days=60, max_age_days=90, expiry_margin_days=10)
NOW = 1_800_000_000.0


def info(issued_days_ago: float, lifetime_days: float | None = 60, valid: bool = True) -> TokenInfo:
    issued = int(NOW - issued_days_ago * DAY_S)
    return TokenInfo(is_valid=valid, issued_at=issued,
                     expires_at=int(issued + lifetime_days * DAY_S) if lifetime_days else 0)


def test_a_young_expiring_token_is_left_alone() -> None:
    assert token_due(info(1), NOW, AGES) is None
    assert token_due(info(30, lifetime_days=90), NOW, AGES) is None


def test_a_token_is_rotated_at_the_policy_age_never_expiring_or_close_to_expiry() -> None:
    assert "95 days old" in str(token_due(info(95, lifetime_days=120), NOW, AGES))
    assert token_due(info(1, lifetime_days=None), NOW, AGES) == "never expires"
    assert "expires in" in str(token_due(info(51), NOW, AGES))  # a 60-day token 9 days before it dies
    assert token_due(info(49), NOW, AGES) is None
    assert token_due(info(1, valid=False), NOW, AGES) == "invalid per debug_token"


def test_written_credentials_are_due_by_their_vault_age() -> None:
    assert written_due(None, NOW, AGES) == "not in Vault"
    assert written_due(NOW - 59 * DAY_S, NOW, AGES) is None
    assert "61 days old" in str(written_due(NOW - 61 * DAY_S, NOW, AGES))


def test_a_replaced_token_is_revoked_only_once_its_grace_window_ended() -> None:
    grace = load_hygiene_policy(Path(__file__).resolve().parents[2] / "runbooks").grace_window_s
    pending = [PendingRevocation(path="meta/messaging-token", version=3, system_user_id="7000000002",
                                 not_before=NOW + grace)]
    assert due_revocations(pending, NOW) == []
    assert due_revocations(pending, NOW + grace - 1) == []
    assert due_revocations(pending, NOW + grace) == pending


def test_waiting_out_the_grace_window_moves_only_the_injected_clock() -> None:
    clock = {"now": NOW}
    slept: list[float] = []

    async def sleep(s: float) -> None:
        slept.append(s)
        clock["now"] += s

    asyncio.run(wait_until(NOW + 3600, lambda: clock["now"], sleep, step_s=600))
    assert clock["now"] == NOW + 3600 and len(slept) == 6
    slept.clear()
    asyncio.run(wait_until(NOW, lambda: clock["now"], sleep))  # already past: no wait at all
    assert slept == []
