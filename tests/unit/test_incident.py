"""The incident timeline is append-only and hash-chained; any edit, drop or reorder is caught."""

import json
from pathlib import Path

import pytest

from waguard.playbook.timeline import IncidentRecord, TimelineBroken, verify_chain


def record(tmp_path: Path) -> IncidentRecord:
    inc = IncidentRecord(tmp_path, "INC-2026-0001")
    inc.append("snapshot", "done", target="waba:3000000001")
    inc.append("approval", "decided", actor="U0ONCALL", data={"verdict": "approved"})
    inc.append("deregister", "done", target="pn:5000000001")
    return inc


def lines(inc: IncidentRecord) -> list[dict]:
    return [json.loads(x) for x in inc.timeline_path.read_text().splitlines()]


def test_records_chain_and_survive_a_new_reader(tmp_path: Path) -> None:
    inc = record(tmp_path)
    again = IncidentRecord(tmp_path, "INC-2026-0001")
    again.verify()
    assert [e.step for e in again.events()] == ["snapshot", "approval", "deregister"]
    assert again.last("deregister", "done", target="pn:5000000001") is not None
    assert again.last("deregister", "done", target="pn:other") is None


@pytest.mark.parametrize(
    "tamper",
    [
        lambda rs: rs[1].__setitem__("actor", "U0ATTACKER"),
        lambda rs: rs.pop(1),
        lambda rs: rs.reverse(),
        lambda rs: rs[0].__setitem__("detail", "x"),
    ],
    ids=["edit", "drop", "reorder", "edit-first"],
)
def test_tampering_is_caught(tmp_path: Path, tamper) -> None:
    records = lines(record(tmp_path))
    tamper(records)
    with pytest.raises(TimelineBroken):
        verify_chain(records)


def test_state_is_remembered_across_readers(tmp_path: Path) -> None:
    IncidentRecord(tmp_path, "INC-1").remember(slack_ts="1.0001", channel="C1")
    IncidentRecord(tmp_path, "INC-1").remember(started_at="2026-11-24T00:00:00Z")
    assert IncidentRecord(tmp_path, "INC-1").state() == {
        "slack_ts": "1.0001", "channel": "C1", "started_at": "2026-11-24T00:00:00Z"}


@pytest.mark.parametrize("bad", ["", "a", "../etc", "x" * 200, "inc id"])
def test_incident_ids_cannot_escape_the_directory(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        IncidentRecord(tmp_path, bad)
