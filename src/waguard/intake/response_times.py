"""Response objectives as Prometheus histograms, per playbook, on real incidents (not only drills).

- `waguard_incident_time_to_detect_seconds{playbook}`: when a delivery opens an incident, the time from
  the moment its source says the problem was seen to the intake receiving it: for a shipped rule's
  alert, when its condition first held (Alertmanager's `startsAt` is when it fired, so the rule's
  `for:` from detection/rules is taken off it); Grafana's `startsAt`; Meta's `entry.time`; GitHub's
  `alert.created_at`. Observed once per incident, at receipt. What comes before the condition holds
  (a scrape, a rate's first samples) is not seen here; the drills measure from the anomaly itself.
- `waguard_incident_time_to_contain_seconds{playbook}`: from the intake opening the incident (the
  alert received) to the last containment step of its run, for runs that closed contained. Runs are
  other processes that already write their timelines, so this is read at scrape time, like
  `run_actions.py`: the incidents the intake opened (its SQLite store, read-only) joined with their
  timelines, each timeline parsed again only when it changed. It is a histogram of every contained
  incident still on disk, so it is right from the first scrape after a restart. With `state.dsn` set
  both come from the shared database instead (`SharedTimelines`: runs on every machine write there).

The practice's objective is MTTD < 15 minutes: `histogram_quantile(0.5, ...)` over these, or the
share of incidents under the 900 s bucket.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger("waguard.intake")

DETECT = "waguard_incident_time_to_detect_seconds"
CONTAIN = "waguard_incident_time_to_contain_seconds"
BUCKETS = (5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0)
NOT_CONTAINMENT = {"open", "close", "snapshot-evidence"}


def _unix(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str) and value and not value.startswith("0001-"):
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def rule_pending_s(detection_dir: Path | None) -> dict[str, float]:
    """Each shipped alert's `for:` in seconds (detection/rules/*.yml); unreadable rules count as none."""
    pending: dict[str, float] = {}
    for path in sorted(detection_dir.glob("rules/*.yml")) if detection_dir else []:
        try:
            groups = (yaml.safe_load(path.read_text()) or {}).get("groups") or []
        except (OSError, yaml.YAMLError) as err:
            log.warning("intake: cannot read %s for time to detect: %s", path, err)
            continue
        for rule in (r for g in groups for r in g.get("rules") or []):
            if "alert" in rule:
                spec = str(rule.get("for") or "0s")
                pending[rule["alert"]] = sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(spec))
    return pending


def signal_started_at(source: str, payload: Any, pending: dict[str, float] | None = None) -> float | None:
    """When the delivery's source says the problem was seen, as Unix seconds, if it says (pure).

    `pending`: alert name -> its rule's `for:` seconds, taken off Alertmanager's `startsAt`."""
    if not isinstance(payload, dict):
        return None
    times: Iterable[Any] = ()
    if source in ("alertmanager", "grafana"):
        late = pending if source == "alertmanager" else None
        times = [
            started - (late or {}).get(str((a.get("labels") or {}).get("alertname")), 0.0)
            for a in payload.get("alerts") or []
            if isinstance(a, dict) and a.get("status") == "firing"
            and (started := _unix(a.get("startsAt"))) is not None
        ]
    elif source == "meta":
        times = [e.get("time") for e in payload.get("entry") or [] if isinstance(e, dict)]
    elif source == "github" and isinstance(payload.get("alert"), dict):
        times = [payload["alert"].get("created_at")]
    found = [t for t in (_unix(v) for v in times) if t is not None]
    return min(found) if found else None


def contained_at(records: list[dict[str, Any]]) -> float | None:
    """When the run's last containment step was done, if its last close says contained (pure)."""
    closes = [r for r in records if r.get("step") == "close"]
    if not closes or closes[-1].get("outcome") != "done" or closes[-1].get("detail") != "contained":
        return None
    done = [
        r
        for r in records
        if r.get("step") not in NOT_CONTAINMENT
        and not str(r.get("step")).startswith("approve")
        and r.get("outcome") in ("done", "already")
    ]
    return _unix((done[-1] if done else closes[-1]).get("at"))


class SharedTimelines(Protocol):
    """Timelines in the shared database, as the scrape-time collectors read them
    (waguard.state.timeline_pg.PostgresTimelines)."""

    def versions(self) -> dict[str, int]:
        """Incident id -> how many records its timeline has (one query: what changed since a scrape)."""
        ...

    def records(self, incident_id: str) -> list[dict[str, Any]]: ...


def read_timeline(path: Path) -> list[dict[str, Any]]:
    records = []
    with path.open() as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue  # a line being written; the next scrape reads it whole
            if isinstance(record, dict):
                records.append(record)
    return records


class TimeToContain(Collector):
    """Scrape-time histogram of alert received -> contained, from the store and the timelines."""

    def __init__(self, store_path: Path, incidents_dir: Path,
                 opened: Callable[[], list[tuple[str, str, float]]] | None = None,
                 shared: SharedTimelines | None = None) -> None:
        self.store_path, self.incidents_dir = store_path, incidents_dir
        self._opened = opened  # the shared store's reader (waguard.state.backends), else the SQLite file
        self._shared = shared  # the shared timelines, else the files under incidents_dir
        self._cache: dict[Path, tuple[tuple[int, int], float | None]] = {}
        self._shared_cache: dict[str, tuple[int, float | None]] = {}

    def opened(self) -> list[tuple[str, str, float]]:
        """(incident id, playbook, opened) of every incident the intake opened (read-only)."""
        if self._opened is not None:
            return self._opened()
        if not self.store_path.exists():
            return []
        db = sqlite3.connect(f"file:{self.store_path}?mode=ro", uri=True, timeout=2)
        try:
            return db.execute("SELECT incident_id, playbook, opened FROM incidents").fetchall()
        finally:
            db.close()

    def _contained(self, incident_id: str) -> float | None:
        path = self.incidents_dir / incident_id.replace(":", "_") / "timeline.jsonl"  # IncidentRecord.dir
        try:
            stat = path.stat()
        except FileNotFoundError:
            return None
        stamp = (stat.st_size, stat.st_mtime_ns)
        cached = self._cache.get(path)
        if cached is None or cached[0] != stamp:
            cached = (stamp, contained_at(read_timeline(path)))
            self._cache[path] = cached
        return cached[1]

    def _contained_shared(self, shared: SharedTimelines) -> Callable[[str], float | None]:
        versions = shared.versions()  # once per scrape; a timeline is read again only when it grew

        def contained(incident_id: str) -> float | None:
            version = versions.get(incident_id)
            if version is None:
                return None
            cached = self._shared_cache.get(incident_id)
            if cached is None or cached[0] != version:
                cached = (version, contained_at(shared.records(incident_id)))
                self._shared_cache[incident_id] = cached
            return cached[1]

        return contained

    def samples(self) -> dict[str, list[float]]:
        by_playbook: dict[str, list[float]] = {}
        contained = self._contained if self._shared is None else self._contained_shared(self._shared)
        for incident_id, playbook, opened in self.opened():
            at = contained(incident_id)
            if at is not None:
                by_playbook.setdefault(playbook, []).append(max(0.0, at - opened))
        return by_playbook

    def describe(self) -> Iterator[HistogramMetricFamily]:
        yield HistogramMetricFamily(
            CONTAIN, "Alert received -> contained, per playbook.", labels=["playbook"]
        )

    def collect(self) -> Iterator[HistogramMetricFamily]:
        family = HistogramMetricFamily(
            CONTAIN, "Alert received -> contained, per playbook.", labels=["playbook"]
        )
        try:
            samples = self.samples()
        except Exception as err:  # noqa: BLE001 - the scrape still answers (a file, SQLite or PostgreSQL error)
            log.warning("intake: cannot read incidents for %s: %s", CONTAIN, type(err).__name__)
            samples = {}
        for playbook, values in sorted(samples.items()):
            counts = [sum(1 for v in values if v <= b) for b in BUCKETS]
            family.add_metric(
                [playbook],
                [*((str(b), c) for b, c in zip(BUCKETS, counts, strict=True)), ("+Inf", len(values))],
                sum(values),
            )
        yield family


class ResponseTimes:
    """Both histograms on one registry; `detected` is called when a delivery opens an incident."""

    def __init__(
        self, registry: CollectorRegistry, store_path: Path | None, incidents_dir: Path | None,
        detection_dir: Path | None = None, opened: Callable[[], list[tuple[str, str, float]]] | None = None,
        shared: SharedTimelines | None = None,
    ) -> None:
        self.pending = rule_pending_s(detection_dir)
        self.detect = Histogram(
            DETECT,
            "Signal seen by its source -> received by the intake, per playbook.",
            ["playbook"],
            buckets=BUCKETS,
            registry=registry,
        )
        if store_path is not None and incidents_dir is not None:
            registry.register(TimeToContain(store_path, incidents_dir, opened, shared))

    def detected(self, playbook: str, source: str, payload: Any, received: float) -> None:
        started = signal_started_at(source, payload, self.pending)
        if started is not None:
            self.detect.labels(playbook).observe(max(0.0, received - started))
