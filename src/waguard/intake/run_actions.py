"""What waguard's own playbook runs changed, read from the incident timelines, as a Prometheus gauge.

The rules in detection/rules tell "changed by waguard" from "changed by someone else" by joining Meta's
events with `waguard_playbook_action_last_seconds{waba_id, action}`: the Unix time of the latest such
change a run recorded. Runs are separate processes that already write every step's report to their
incident's timeline (`<incidents_dir>/<incident>/timeline.jsonl`), so the intake reads those at scrape
time instead of taking a second, unauthenticated report from each run. A timeline is parsed again only
when its size or modification time changed. A gauge of time (not a counter) is right from the first
scrape after either process restarts. With `state.dsn` set the timelines are read from the shared
database instead (runs on every machine write there), each again only when it grew.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from waguard.intake.response_times import SharedTimelines, read_timeline

log = logging.getLogger("waguard.intake")

METRIC = "waguard_playbook_action_last_seconds"
# Timeline step name (the steps' StepReport.step) -> the action label.
STEP_ACTIONS = {
    "issue-token": "token_issued",
    "revoke-token": "token_revoked",
    "new-two-step-pin": "pin_changed",
    "remove-unknown-users": "user_removed",
    "deregister-numbers": "number_deregistered",
    # The scheduled credential-rotation deployment (flows/credential_rotation.py) changes these too.
    "rotate-token": "token_issued",
    "revoke-replaced-token": "token_revoked",
    "rotate-two-step-pin": "pin_changed",
}
Latest = dict[tuple[str, str], float]


def timeline_actions(records: list[dict[str, Any]], default_waba: str) -> Latest:
    """The latest time of each action that changed something (`acted` not empty), per WABA (pure).

    The WABA is the one the run's latest `open` record names (a re-run may act on another); timelines
    written before runs named it count under `default_waba`, the WABA such runs acted on by default.
    """
    waba = default_waba
    latest: Latest = {}
    for record in records:
        raw = record.get("data")
        data: dict[str, Any] = raw if isinstance(raw, dict) else {}
        if record.get("step") == "open" and isinstance(data.get("waba_id"), str):
            waba = data["waba_id"]
        action = STEP_ACTIONS.get(str(record.get("step")))
        if action is None or not data.get("acted"):
            continue
        try:
            at = datetime.fromisoformat(str(record.get("at"))).timestamp()
        except ValueError:
            continue
        latest[(waba, action)] = max(at, latest.get((waba, action), 0.0))
    return latest


class PlaybookActions(Collector):
    """A custom collector: scans the incident timelines when Prometheus scrapes."""

    def __init__(self, incidents_dir: Path, default_waba: str, shared: SharedTimelines | None = None) -> None:
        self.incidents_dir = incidents_dir
        self.default_waba = default_waba
        self._shared = shared
        self._cache: dict[Path, tuple[tuple[int, int], Latest]] = {}
        self._shared_cache: dict[str, tuple[int, Latest]] = {}

    def _latest_shared(self, shared: SharedTimelines) -> Latest:
        merged: Latest = {}
        versions = {i: v for i, v in shared.versions().items() if not i.endswith(".plan")}
        for incident_id, version in versions.items():
            cached = self._shared_cache.get(incident_id)
            if cached is None or cached[0] != version:
                cached = (version, timeline_actions(shared.records(incident_id), self.default_waba))
                self._shared_cache[incident_id] = cached
            for key, at in cached[1].items():
                merged[key] = max(at, merged.get(key, 0.0))
        for gone in set(self._shared_cache) - set(versions):
            del self._shared_cache[gone]
        return merged

    def latest(self) -> Latest:
        if self._shared is not None:
            return self._latest_shared(self._shared)
        merged: Latest = {}
        seen: set[Path] = set()
        for path in sorted(self.incidents_dir.glob("*/timeline.jsonl")):
            if path.parent.name.endswith(".plan"):
                continue  # previews act on nothing
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            seen.add(path)
            stamp = (stat.st_size, stat.st_mtime_ns)
            cached = self._cache.get(path)
            if cached is None or cached[0] != stamp:
                cached = (stamp, timeline_actions(read_timeline(path), self.default_waba))
                self._cache[path] = cached
            for key, at in cached[1].items():
                merged[key] = max(at, merged.get(key, 0.0))
        for gone in set(self._cache) - seen:
            del self._cache[gone]
        return merged

    def describe(self) -> Iterator[GaugeMetricFamily]:
        yield GaugeMetricFamily(
            METRIC,
            "Unix time of the latest change of this kind a waguard run made.",
            labels=["waba_id", "action"],
        )

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            METRIC,
            "Unix time of the latest change of this kind a waguard run made.",
            labels=["waba_id", "action"],
        )
        try:
            latest = self.latest()
        except Exception as err:  # noqa: BLE001 - the scrape still answers; the rules see the series go stale
            log.warning("intake: cannot read incident timelines: %s", type(err).__name__)
            latest = {}
        for (waba, action), at in sorted(latest.items()):
            family.add_metric([waba, action], at)
        yield family
