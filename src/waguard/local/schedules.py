"""prefect.yaml's `schedules:` entries as Prefect schedules, for the launcher and the served runner.

Both build deployments from prefect.yaml themselves (not with `prefect deploy`), so they read the
same keys `prefect deploy` reads: `cron` (with `timezone`) or `interval` (seconds), and `active`.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from prefect.schedules import Cron, Interval, Schedule

from waguard.errors import ConfigError


def deployment_schedules(spec: dict[str, Any]) -> list[Schedule] | None:
    """The schedules one prefect.yaml deployment declares (None: it has none, so nothing is replaced)."""
    entries = spec.get("schedules")
    if not entries:
        return None
    out = []
    for entry in entries:
        unknown = set(entry) - {"cron", "interval", "timezone", "active"}
        if unknown or ("cron" in entry) == ("interval" in entry):
            raise ConfigError(
                f"deployment {spec.get('name')}: a schedule needs exactly one of cron or interval "
                f"(and optionally timezone, active); got {sorted(entry)}"
            )
        active = bool(entry.get("active", True))
        if "cron" in entry:
            out.append(Cron(str(entry["cron"]), timezone=entry.get("timezone"), active=active))
        else:
            out.append(Interval(timedelta(seconds=int(entry["interval"])), timezone=entry.get("timezone"),
                                active=active))
    return out
