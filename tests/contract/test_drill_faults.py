"""A drill's faults last only as long as their scenario (issue 11 item 6): armed through the Meta
simulator's /_sim/faults and cleared when the scenario ends, even when it ends in an error."""

from __future__ import annotations

import pytest

from tests.fixtures.meta import MetaSim
from waguard.drills.faults import armed
from waguard.local.stack import StackUrls


def _urls(meta_sim: MetaSim) -> StackUrls:
    return StackUrls(prefect_ui="-", prefect_api="-", vault="-", meta=meta_sim.url, slack="-", intake="-")


async def test_faults_armed_for_a_scenario_are_gone_when_it_ends(meta_sim: MetaSim) -> None:
    async with armed(["graph-429", "graph-5xx"], _urls(meta_sim)) as logs:
        assert len(meta_sim.admin.get("/_sim/faults").json()["faults"]) == 2
        async with meta_sim.client() as graph:
            with pytest.raises(Exception, match="MetaThrottled"):
                await graph.get_phone_number(meta_sim.number_id)  # one of the three 429s used
    assert meta_sim.admin.get("/_sim/faults").json()["faults"] == []
    async with meta_sim.client() as graph:  # no retries: the very next call must go through
        assert (await graph.get_phone_number(meta_sim.number_id)).id == meta_sim.number_id
    assert [log.applied for log in logs] == [True, True]
    assert any("2 unused" in note for note in logs[0].notes)  # 429s: 3 armed, 1 used
    assert any("3 unused" in note for note in logs[1].notes)


async def test_faults_are_disarmed_when_the_scenario_fails(meta_sim: MetaSim) -> None:
    with pytest.raises(RuntimeError, match="scenario broke"):
        async with armed(["graph-5xx"], _urls(meta_sim)):
            raise RuntimeError("scenario broke")
    assert meta_sim.admin.get("/_sim/faults").json()["faults"] == []
