"""The Prefect internals the launcher relies on, pinned: this fails when an upgrade changes them.

src/waguard/launcher runs its children under Prefect's FlowRunExecutorContext with its own
ProcessStarter, claims runs with StateProposer.propose_pending, and runs the engine's own entry code
in each forked child. pyproject pins prefect==3.9.1; before moving the pin, re-read these places.
"""

from __future__ import annotations

import inspect

import prefect


def params(fn: object) -> list[str]:
    return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]


def test_the_pinned_prefect_version_is_installed() -> None:
    assert prefect.__version__ == "3.9.1"


def test_executor_context_and_starter_protocol() -> None:
    from prefect.runner._flow_run_executor import FlowRunExecutor, FlowRunExecutorContext, ProcessStarter

    assert params(ProcessStarter.start) == ["self", "flow_run", "task_status"]
    assert params(FlowRunExecutorContext.create_executor) == [
        "self", "flow_run", "starter", "resolve_flow", "propose_submitting", "hook_runner"]
    assert params(FlowRunExecutor.submit) == ["self", "task_status"]
    # The launcher reads these attributes of an entered context.
    source = inspect.getsource(FlowRunExecutorContext.__aenter__)
    for attribute in ("self.client", "self.control_channel", "self.process_manager"):
        assert attribute in source
    # A non-zero exit becomes Crashed with the exit status, and on_crashed hooks run.
    submit = inspect.getsource(FlowRunExecutor.submit)
    assert "propose_crashed" in submit and "run_crashed_hooks" in submit and "returncode" in submit


def test_process_handle_accepts_any_object_with_pid_and_returncode() -> None:
    from prefect.runner._process_manager import (
        ProcessHandle,
        _PosixProcessGroupTerminationScope,
        create_isolated_termination_scope,
    )

    class Child:
        pid, returncode = 12345, None

    handle = ProcessHandle(Child())  # type: ignore[arg-type]
    assert handle.pid == 12345 and handle.returncode is None
    Child.returncode = -9
    assert handle.returncode == -9
    assert isinstance(create_isolated_termination_scope(12345), _PosixProcessGroupTerminationScope)


def test_claim_through_pending_is_once_per_run() -> None:
    import prefect.server.models  # noqa: F401  (core_policy imports models; import them first)
    from prefect.runner._state_proposer import StateProposer
    from prefect.server.orchestration.core_policy import PreventPendingTransitions
    from prefect.server.schemas.states import StateType

    assert params(StateProposer.propose_pending) == ["self", "flow_run"]
    assert params(StateProposer.__init__) == ["self", "client"]
    assert {StateType.PENDING, StateType.RUNNING, StateType.CANCELLING, StateType.CANCELLED} <= set(
        PreventPendingTransitions.FROM_STATES)
    assert StateType.SCHEDULED not in PreventPendingTransitions.FROM_STATES
    assert set(PreventPendingTransitions.TO_STATES) == {StateType.PENDING}


def test_engine_entry_code_the_child_repeats() -> None:
    """waguard.launcher.child mirrors prefect.flow_engine._run_flow_from_runtime_entrypoint."""
    from prefect import engine, flow_engine
    from prefect._internal import control_listener

    mirrored = inspect.getsource(flow_engine._run_flow_from_runtime_entrypoint)
    for step in ("configure_from_env()", "handle_engine_signals(flow_run_id)", "load_flow_run(flow_run_id=",
                 "flow_run_logger(flow_run=", "RunMetrics(flow_run, flow)", "run_flow(flow, flow_run=flow_run",
                 "_drive_run_flow_result(flow, run_result)"):
        assert step in mirrored, step
    assert callable(engine._drive_run_flow_result) and callable(control_listener.configure_from_env)
    # The env the child reads (set by the starter), as Prefect's own starters set it.
    starter = inspect.getsource(__import__("prefect.runner._starter_engine", fromlist=["x"]))
    for name in ("PREFECT__CONTROL_PORT", "PREFECT__CONTROL_TOKEN", "PREFECT__FLOW_RUN_ID",
                 "PREFECT__ENABLE_CANCELLATION_AND_CRASHED_HOOKS"):
        assert name in starter


def test_lease_id_handoff_reads_the_concurrency_context() -> None:
    """hand_over_current_leases relies on the lease id being recorded the moment it is granted."""
    from prefect.concurrency import _asyncio
    from prefect.concurrency.context import ConcurrencyContext

    assert "cleanup_lease_ids" in ConcurrencyContext.model_fields
    acquire = inspect.getsource(_asyncio.aacquire_concurrency_slots_with_lease)
    assert "ctx.cleanup_lease_ids.append(retval.lease_id)" in acquire
    from prefect.client.orchestration import PrefectClient

    assert params(PrefectClient.release_concurrency_slots_with_lease) == ["self", "lease_id"]
    assert "decrement-with-lease" in inspect.getsource(PrefectClient.release_concurrency_slots_with_lease)
