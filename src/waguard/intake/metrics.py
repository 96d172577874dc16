"""Prometheus metrics of the intake, on a registry of their own (one per app, so tests can build many).

Labels are closed sets (source names, outcome and reason codes, playbook names), never a value taken
from a request. The detection signals (what Meta's webhooks show, what playbook runs changed) carry ids
too: `signals.py`, `run_actions.py`; their names are listed in detection/metrics.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from waguard.intake.response_times import ResponseTimes, SharedTimelines
from waguard.intake.run_actions import PlaybookActions
from waguard.intake.signals import MetaSignals

CONTENT_TYPE = CONTENT_TYPE_LATEST


class IntakeMetrics:
    """The counters `/metrics` exposes."""

    def __init__(self, registry: CollectorRegistry | None = None, *, known_wabas: Iterable[str] = (),
                 incidents_dir: Path | None = None, default_waba: str = "",
                 store_path: Path | None = None, detection_dir: Path | None = None,
                 opened: Callable[[], list[tuple[str, str, float]]] | None = None,
                 shared_timelines: SharedTimelines | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.meta = MetaSignals(r, known_wabas)
        if incidents_dir is not None:
            r.register(PlaybookActions(incidents_dir, default_waba, shared_timelines))
        self.response = ResponseTimes(r, store_path, incidents_dir, detection_dir, opened,  # detect / contain
                                      shared_timelines)
        self.deliveries = Counter("waguard_intake_deliveries", "Deliveries by source and outcome.",
                                  ["source", "outcome"], registry=r)
        self.signature_failures = Counter(
            "waguard_intake_signature_failures",
            "Deliveries that failed authentication (a detection signal).",
            ["source", "reason"], registry=r)
        self.runs_started = Counter("waguard_intake_runs_started", "Playbook runs started.", ["playbook"],
                                    registry=r)
        self.run_start_errors = Counter("waguard_intake_run_start_errors",
                                        "Failed attempts to start a run (retried).", ["playbook"], registry=r)
        self.duplicates = Counter(
            "waguard_intake_duplicates_absorbed",
            "Deliveries absorbed without a new run: replays, and deliveries joining an open incident.",
            ["source", "kind"], registry=r)
        self.connections_refused = Counter(
            "waguard_intake_connections_refused",
            "Connections closed or refused by the HTTP limits (header size/count, timeouts, cap).",
            ["reason"], registry=r)
        self.approvals = Counter("waguard_intake_approval_decisions", "Slack approval clicks by outcome.",
                                 ["decision", "outcome"], registry=r)

    def render(self) -> bytes:
        """The Prometheus text exposition."""
        return generate_latest(self.registry)
