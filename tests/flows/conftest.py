"""A failed flow test must not fail the ones after it.

A test that fails while its run is paused leaves that run holding the WABA's slot, and every later run
on that WABA queues behind it: one failure became five in a full run. After a failed test, its runs
that have not ended are cancelled through the API, as a responder would (the launcher stops the
process; the cancellation hook closes the incident and frees the slot).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import pytest


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()
_ACTIVE = ["PAUSED", "RUNNING", "PENDING", "SCHEDULED"]


@pytest.fixture(autouse=True)
async def cancel_runs_a_failed_test_left(request: pytest.FixtureRequest) -> AsyncIterator[None]:
    started = datetime.now(UTC)
    yield
    if not request.node.stash.get(_FAILED, False) or "local_stack" not in request.fixturenames:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterExpectedStartTime,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType
    from prefect.states import Cancelled, Cancelling

    async with get_client() as client:
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType(s) for s in _ACTIVE])),
            expected_start_time=FlowRunFilterExpectedStartTime(after_=started)))
        for run in runs:
            # A deployment's run is the launcher's to stop; an in-process one has nobody to hand it to.
            state = Cancelling() if run.deployment_id else Cancelled()
            await client.set_flow_run_state(run.id, state, force=True)
