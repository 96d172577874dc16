"""The registration-budget ledger's contract, run against SQLite (one machine) and PostgreSQL (every
launcher on every machine): Meta's 10 register/deregister calls per number per 72 h are never
over-spent, however many runs race for the last units."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from waguard.errors import ConfigError
from waguard.meta.errors import RegistrationBudgetExhausted
from waguard.meta.ledger import REGISTRATION_LIMIT, REGISTRATION_WINDOW_S, LedgerEntry, RegistrationLedger
from waguard.settings import MetaSettings, Settings, StateSettings
from waguard.state.backends import open_ledger
from waguard.state.ledger_pg import PostgresLedger
from waguard.state.protocols import BudgetLedger

PN = "106853218861309"
T0 = 1_700_000_000.0
HOUR = 3600.0
Opener = Callable[[], BudgetLedger]


@pytest.fixture(params=["sqlite", "postgres"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Opener:
    """Opens one more ledger on the shared backend (another process's view of it)."""
    if request.param == "sqlite":
        return lambda: RegistrationLedger(tmp_path / "ledger.sqlite3")
    dsn = request.getfixturevalue("pg_dsn")
    return lambda: PostgresLedger(dsn)


@pytest.fixture
def ledger(opener: Opener) -> BudgetLedger:
    return opener()


def test_ten_allowed_eleventh_refused_and_not_recorded(ledger: BudgetLedger) -> None:
    left = [ledger.reserve(PN, "deregister" if i % 2 else "register", T0 + i) for i in range(10)]
    assert left == [9, 8, 7, 6, 5, 4, 3, 2, 1, 0]
    assert ledger.remaining(PN, T0 + 10) == 0
    with pytest.raises(RegistrationBudgetExhausted) as caught:
        ledger.reserve(PN, "deregister", T0 + 11)
    assert caught.value.retry_at == T0 + REGISTRATION_WINDOW_S
    assert len(ledger.history(PN)) == 10


def test_window_slides_after_72_hours(ledger: BudgetLedger) -> None:
    for i in range(10):
        ledger.reserve(PN, "deregister", T0 + i * HOUR)
    with pytest.raises(RegistrationBudgetExhausted):
        ledger.reserve(PN, "register", T0 + REGISTRATION_WINDOW_S - 1)
    assert ledger.remaining(PN, T0 + REGISTRATION_WINDOW_S) == 1
    assert ledger.reserve(PN, "register", T0 + REGISTRATION_WINDOW_S) == 0
    assert ledger.remaining(PN, T0 + 2 * REGISTRATION_WINDOW_S + 1) == 10


def test_numbers_have_separate_budgets_and_history_is_oldest_first(ledger: BudgetLedger) -> None:
    for i in range(10):
        ledger.reserve(PN, "deregister", T0 + 10 - i)
    assert ledger.reserve("222", "register", T0 + 20) == 9
    assert ledger.remaining(PN, T0 + 20) == 0
    assert ledger.history("222") == [LedgerEntry("222", "register", T0 + 20)]
    assert [e.at for e in ledger.history(PN)] == [T0 + 1 + i for i in range(10)]
    assert ledger.history("999") == []


@pytest.mark.parametrize(("pn", "action", "now", "field"), [
    ("12ab", "register", T0, "phone_number_id"),
    (PN, "delete", T0, "action"),
    (PN, "register", float("nan"), "now"),
])
def test_bad_input_changes_nothing(ledger: BudgetLedger, pn: str, action: str, now: float,
                                   field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ledger.reserve(pn, action, now)  # type: ignore[arg-type]
    assert ledger.history(PN) == []


def test_another_ledger_on_the_same_backend_sees_the_spending(opener: Opener) -> None:
    first = opener()
    for i in range(7):
        first.reserve(PN, "deregister", T0 + i)
    assert opener().remaining(PN, T0 + 10) == 3


def test_racing_runs_never_over_spend(opener: Opener) -> None:
    """16 runs (a ledger each, as 16 processes would have) all reserve the same number at once, with
    3 units already spent: exactly 7 get one, the others are refused, and nothing extra is recorded."""
    ledgers = [opener() for _ in range(16)]
    for i in range(3):
        ledgers[0].reserve(PN, "register", T0 + i)
    barrier = threading.Barrier(len(ledgers))
    outcomes: list[object] = [None] * len(ledgers)

    def run(i: int) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes[i] = ledgers[i].reserve(PN, "deregister", T0 + 10 + i)
        except BaseException as err:  # noqa: BLE001 - judged below
            outcomes[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(ledgers))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    granted = [o for o in outcomes if isinstance(o, int)]
    refused = [o for o in outcomes if isinstance(o, RegistrationBudgetExhausted)]
    assert len(granted) == REGISTRATION_LIMIT - 3 and len(refused) == 16 - len(granted), outcomes
    assert sorted(granted) == list(range(REGISTRATION_LIMIT - 3))  # each unit handed out once
    assert len(ledgers[1].history(PN)) == REGISTRATION_LIMIT


def test_the_dsn_setting_chooses_the_ledger(tmp_path: Path, pg_dsn: str) -> None:
    meta = MetaSettings(ledger_path=tmp_path / "ledger.sqlite3")
    assert isinstance(open_ledger(Settings(meta=meta)), RegistrationLedger)
    shared = open_ledger(Settings(meta=meta, state=StateSettings(dsn=pg_dsn)))
    assert isinstance(shared, PostgresLedger)
    shared.reserve(PN, "register", T0)
    assert RegistrationLedger(tmp_path / "ledger.sqlite3").history(PN) == []  # not the file
    with pytest.raises(ConfigError, match="WAGUARD_STATE__DSN"):
        open_ledger(Settings(state=StateSettings(dsn="postgresql://waguard@127.0.0.1:1/x", reconnect_s=0.5)))
