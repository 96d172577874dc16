"""The intake's per-delivery shortcuts give the same answers as the work they skip.

Routing remembers whether a parameter set passes the playbook's model (an alert group repeats the
same few label sets); a remembered answer must never stand in for another set's.
"""

from __future__ import annotations

from waguard.intake import routing
from waguard.intake.routing import AlertNotification, AlertRouting, alert_route

CFG = AlertRouting.model_validate(
    {"playbooks": {"template_abuse": {"labels": {"waba_id": "waba_id", "template_names": "template"}}}}
)


def note(waba: str, template: str = "t1") -> AlertNotification:
    labels = {"alertname": "A", "playbook": "template-abuse", "waba_id": waba, "template": template}
    alerts = [{"status": "firing", "labels": labels}]
    payload = {"version": "4", "groupKey": "{}:{}", "status": "firing", "alerts": alerts}
    return AlertNotification.model_validate(payload)


def started(waba: str, template: str = "t1") -> bool:
    return bool(alert_route("alertmanager", note(waba, template), CFG).starts)


def test_a_remembered_validity_never_answers_for_other_values() -> None:
    for _ in range(3):  # the first answer computed, the others remembered
        assert started("42")
        assert not started("not-digits")  # waba_id must be digits
        assert started("43", "t2")
    assert not alert_route("alertmanager", note("x1"), CFG).starts
    assert "invalid parameters" in alert_route("alertmanager", note("x1"), CFG).notes[0]


def test_what_is_remembered_is_bounded() -> None:
    for n in range(routing.VALIDITY_KEPT + 10):
        assert started(str(n))
    assert 0 < len(routing._validity) <= routing.VALIDITY_KEPT
    assert not started("still-not-digits")



def test_meta_signal_series_past_the_cap_fold_into_other_and_known_ones_keep_counting() -> None:
    from prometheus_client import CollectorRegistry

    from waguard.intake.detect import MetaDelivery
    from waguard.intake.signals import OTHER, MetaSignals

    registry = CollectorRegistry()
    signals = MetaSignals(registry, max_series=2)

    def flagged(template: str) -> None:
        change = {"field": "message_template_status_update",
                  "value": {"event": "FLAGGED", "message_template_id": 5, "message_template_name": template}}
        signals.observe(MetaDelivery.model_validate(
            {"object": "whatsapp_business_account", "entry": [{"id": "100", "changes": [change]}]}))

    def count(template: str, waba: str = "100", template_id: str = "5") -> float | None:
        return registry.get_sample_value("waguard_meta_template_status_updates_total", {
            "waba_id": waba, "template_id": template_id, "template": template, "event": "FLAGGED"})

    for name in ["a", "b", "c", "d", "a", "b", "c"]:
        flagged(name)
    assert (count("a"), count("b")) == (2.0, 2.0)  # the first two series, each child reused
    assert count("c") is None and count("d") is None
    assert count(OTHER, OTHER, OTHER) == 3.0  # c, d, c: past the cap, every id folded
