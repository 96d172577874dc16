"""The registration ledger keeps Meta's 10-per-72-h budget across runs, processes and restarts."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from waguard.meta.errors import RegistrationBudgetExhausted
from waguard.meta.ledger import REGISTRATION_LIMIT, REGISTRATION_WINDOW_S, LedgerEntry, RegistrationLedger
from waguard.settings import MetaSettings

PN = "106853218861309"
T0 = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def ledger(tmp_path: Path) -> RegistrationLedger:
    return RegistrationLedger(tmp_path / "nested" / "dir" / "ledger.sqlite3")


def test_constants_are_metas() -> None:
    assert REGISTRATION_LIMIT == 10
    assert REGISTRATION_WINDOW_S == 72 * HOUR


def test_ten_allowed_eleventh_refused_and_not_recorded(ledger: RegistrationLedger) -> None:
    left = [ledger.reserve(PN, "deregister" if i % 2 else "register", T0 + i) for i in range(10)]
    assert left == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert ledger.remaining(PN, T0 + 10) == 0
    with pytest.raises(RegistrationBudgetExhausted) as caught:
        ledger.reserve(PN, "deregister", T0 + 11)
    assert caught.value.phone_number_id == PN
    assert caught.value.retry_at == T0 + REGISTRATION_WINDOW_S  # when the first attempt leaves the window
    assert len(ledger.history(PN)) == 10  # the refused attempt is not recorded


def test_window_slides_after_72_hours(ledger: RegistrationLedger) -> None:
    for i in range(10):
        ledger.reserve(PN, "deregister", T0 + i * HOUR)
    just_before = T0 + REGISTRATION_WINDOW_S - 1
    assert ledger.remaining(PN, just_before) == 0
    with pytest.raises(RegistrationBudgetExhausted):
        ledger.reserve(PN, "register", just_before)
    # At exactly 72 h the first attempt no longer counts; one unit is free, the rest follow hourly.
    assert ledger.remaining(PN, T0 + REGISTRATION_WINDOW_S) == 1
    assert ledger.reserve(PN, "register", T0 + REGISTRATION_WINDOW_S) == 0
    assert ledger.remaining(PN, T0 + REGISTRATION_WINDOW_S + 5 * HOUR) == 5
    assert ledger.remaining(PN, T0 + 2 * REGISTRATION_WINDOW_S + 1) == 10


def test_numbers_have_separate_budgets(ledger: RegistrationLedger) -> None:
    for i in range(10):
        ledger.reserve(PN, "deregister", T0 + i)
    assert ledger.reserve("222", "deregister", T0 + 20) == 9
    assert ledger.remaining(PN, T0 + 20) == 0


def test_survives_a_new_ledger_on_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    first = RegistrationLedger(path)
    for i in range(7):
        first.reserve(PN, "deregister", T0 + i)
    del first
    reopened = RegistrationLedger(path)
    assert reopened.remaining(PN, T0 + 10) == 3
    assert reopened.history(PN)[0] == LedgerEntry(PN, "deregister", T0)


def test_two_ledgers_on_one_file_do_not_double_spend(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    a, b = RegistrationLedger(path), RegistrationLedger(path)
    for i in range(5):
        a.reserve(PN, "deregister", T0 + i)
        b.reserve(PN, "register", T0 + i)
    for ledger in (a, b):
        with pytest.raises(RegistrationBudgetExhausted):
            ledger.reserve(PN, "deregister", T0 + 6)


def test_concurrent_reservations_spend_exactly_the_budget(tmp_path: Path) -> None:
    """24 workers, each with its own ledger (own connection, as separate processes would have)."""
    path = tmp_path / "ledger.sqlite3"
    RegistrationLedger(path)
    outcomes: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(24)

    def worker() -> None:
        ledger = RegistrationLedger(path)
        start.wait()
        try:
            ledger.reserve(PN, "deregister", T0)
            result = "granted"
        except RegistrationBudgetExhausted:
            result = "refused"
        with lock:
            outcomes.append(result)

    threads = [threading.Thread(target=worker) for _ in range(24)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("granted") == 10 and outcomes.count("refused") == 14
    assert len(RegistrationLedger(path).history(PN)) == 10


SPENDER = """
import sys
from waguard.meta.errors import RegistrationBudgetExhausted
from waguard.meta.ledger import RegistrationLedger
ledger = RegistrationLedger(sys.argv[1])
granted = 0
for _ in range(8):
    try:
        ledger.reserve("106853218861309", "deregister", 1_700_000_000.0)
        granted += 1
    except RegistrationBudgetExhausted:
        pass
print(granted)
"""


def test_two_processes_share_one_budget(tmp_path: Path) -> None:
    path = tmp_path / "ledger.sqlite3"
    procs = [
        subprocess.Popen([sys.executable, "-c", SPENDER, str(path)], stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    granted = [int(p.communicate(timeout=60)[0]) for p in procs]
    assert sum(granted) == 10 and all(p.returncode == 0 for p in procs)


def test_history_lists_attempts_oldest_first(ledger: RegistrationLedger) -> None:
    ledger.reserve(PN, "deregister", T0 + 5)
    ledger.reserve(PN, "register", T0 + 1)
    assert ledger.history(PN) == [LedgerEntry(PN, "register", T0 + 1), LedgerEntry(PN, "deregister", T0 + 5)]
    assert ledger.history("999") == []


@pytest.mark.parametrize(
    ("pn", "action", "now", "field"),
    [
        ("12ab", "register", T0, "phone_number_id"),
        ("", "register", T0, "phone_number_id"),
        (PN, "delete", T0, "action"),
        (PN, "register", float("nan"), "now"),
        (PN, "register", True, "now"),
    ],
)
def test_bad_input_changes_nothing(
    ledger: RegistrationLedger, pn: str, action: str, now: float, field: str
) -> None:
    with pytest.raises(ValueError, match=field):
        ledger.reserve(pn, action, now)  # type: ignore[arg-type]
    assert ledger.history(PN) == []


def test_from_settings_uses_ledger_path_and_creates_parents(tmp_path: Path) -> None:
    meta = MetaSettings(ledger_path=tmp_path / "a" / "b" / "ledger.sqlite3")
    ledger = RegistrationLedger.from_settings(meta)
    ledger.reserve(PN, "deregister", T0)
    assert (tmp_path / "a" / "b" / "ledger.sqlite3").is_file()
    assert str(tmp_path) in repr(ledger)
