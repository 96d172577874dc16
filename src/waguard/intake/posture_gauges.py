"""The posture audit's latest findings as Prometheus gauges, read from the file the audit writes.

The audit is a scheduled run in another process; like the playbook timelines (`run_actions.py`), the
intake reads its result at scrape time (`<intake.state_dir>/posture-audit.json`) instead of taking an
unauthenticated report. Every kind and severity is exported, zero included, so a resolved finding
drops to 0 instead of vanishing. Labels are closed sets (`waguard.steps.posture.KINDS`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from waguard.steps.posture import KINDS, LATEST_FILE

log = logging.getLogger("waguard.intake")
FINDINGS = "waguard_posture_findings"
LAST_AUDIT = "waguard_posture_audit_last_seconds"


def latest_counts(data: dict[str, Any]) -> dict[tuple[str, str], int]:
    """(kind, severity) -> count from an audit result; unknown kinds are ignored (pure)."""
    out: dict[tuple[str, str], int] = {(k, s): 0 for k, s in KINDS.items()}
    for f in data.get("findings", []):
        kind = str(f.get("kind", ""))
        key = (kind, KINDS.get(kind, ""))
        if key in out:
            out[key] += 1
    return out


class PostureGauges(Collector):
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / LATEST_FILE

    def collect(self) -> Iterator[GaugeMetricFamily]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return  # no audit yet: no series (an absent() rule can tell)
        except (OSError, ValueError) as err:
            log.warning("cannot read the posture audit result %s: %s", self.path, type(err).__name__)
            return
        findings = GaugeMetricFamily(FINDINGS, "Findings of the latest posture audit, by kind and severity.",
                                     labels=["kind", "severity"])
        for (kind, severity), n in sorted(latest_counts(data).items()):
            findings.add_metric([kind, severity], n)
        yield findings
        yield GaugeMetricFamily(
            LAST_AUDIT, "Unix time of the latest posture audit.", value=float(data.get("at", 0))
        )
