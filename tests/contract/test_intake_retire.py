"""An incident whose run has ended does not swallow the next detection for the same key."""

import tests.fixtures.intake as fx
from tests.fixtures.intake import Harness, meta_delivery, post_meta, template_change

intake = fx.intake
intake_env = fx.intake_env


async def test_a_delivery_after_the_run_ended_opens_a_new_incident(intake: Harness) -> None:
    first = (await post_meta(intake, meta_delivery(template_change("FLAGGED", name="phish_a"), time=1))).json()
    await intake.settle()
    second = (await post_meta(intake, meta_delivery(template_change("PAUSED", name="phish_a"), time=2))).json()
    assert [first["outcome"], second["outcome"]] == ["started", "joined"]   # the run is still going
    await intake.settle()
    [(_, _, key)] = intake.starter.starts
    intake.starter.ended.add(intake.starter._by_key[key])                    # ... and now it has ended
    intake.clock.advance(2)                                                   # past the 1 s recheck cache
    third = (await post_meta(intake, meta_delivery(template_change("FLAGGED", name="phish_b"), time=3))).json()
    await intake.settle()
    assert third["outcome"] == "started"
    assert third["incidents"][0]["incident_key"] != first["incidents"][0]["incident_key"]
    assert [p["template_names"] for _, p, _ in intake.starter.starts] == [["phish_a"], ["phish_b"]]
