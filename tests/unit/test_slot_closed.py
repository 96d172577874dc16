"""A run waiting for its WABA's slot stops when its incident is closed by someone else, and only then:
a retried run's earlier attempt may be closed after the retry opened (seen on the scaled profile: a
killed launcher's runs marked Crashed, then retried; one retry failed with IncidentClosedWhileWaiting)."""

from __future__ import annotations

from pathlib import Path

from waguard.playbook.run import closed_by_another
from waguard.playbook.timeline import IncidentRecord

RUN, OTHER = "11111111-1111-1111-1111-111111111111", "22222222-2222-2222-2222-222222222222"


def test_a_late_close_of_this_runs_earlier_attempt_does_not_end_its_retry(tmp_path: Path) -> None:
    incident = IncidentRecord(tmp_path, "INC-1")
    incident.append("open", "started", data={"run": RUN})
    opened = incident.append("open", "started", data={"run": RUN})  # the retry opens
    incident.append("close", "ended", "crashed", data={"run": RUN})  # attempt 1's crash, recorded late
    assert not closed_by_another(incident.events(), opened.seq, RUN)
    incident.append("close", "ended", "cancelled", data={"run": OTHER})  # someone else closed it
    assert closed_by_another(incident.events(), opened.seq, RUN)


def test_a_close_before_this_attempt_opened_does_not_count(tmp_path: Path) -> None:
    incident = IncidentRecord(tmp_path, "INC-2")
    incident.append("close", "ended", "cancelled", data={"run": OTHER})
    opened = incident.append("open", "started", data={"run": RUN})
    assert not closed_by_another(incident.events(), opened.seq, RUN)
