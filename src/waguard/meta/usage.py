"""Graph rate-limit signals as pure functions: usage headers, Meta's wait hints, back-off delays.

Re-exported by `wire.py`; kept apart so the request builders stay short. Sources: Graph
rate-limiting page (X-App-Usage, X-Business-Use-Case-Usage with estimated_time_to_regain_access in
minutes) and reference/meta-graph-api.md section 7.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

BACKOFF_BASE_S = 1.0
SLOW_DOWN_PERCENT = 90  # Meta: back off when any usage percentage nears 100


def header(headers: Mapping[str, str], name: str) -> str | None:
    """Case-insensitive header lookup over any mapping (httpx.Headers or a plain dict)."""
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def as_int(value: Any) -> int | None:
    """An int from JSON that may carry numbers as strings; None for anything else (bools included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


@dataclass(frozen=True)
class Usage:
    """One usage record: percentages of a rolling one-hour budget (`X-App-Usage` or one BUC entry)."""

    call_count: int = 0
    total_cputime: int = 0
    total_time: int = 0
    business_id: str | None = None
    type: str | None = None
    estimated_time_to_regain_access: int = 0  # minutes, BUC only

    @property
    def peak(self) -> int:
        """The highest of the three percentages: Meta throttles when any reaches 100."""
        return max(self.call_count, self.total_cputime, self.total_time)


def _usage(raw: Mapping[str, Any], **extra: Any) -> Usage:
    def pct(key: str) -> int:
        return as_int(raw.get(key)) or 0

    return Usage(pct("call_count"), pct("total_cputime"), pct("total_time"), **extra)


def _json_header(headers: Mapping[str, str], name: str) -> Any:
    try:
        return json.loads(header(headers, name) or "null")
    except ValueError:
        return None  # advisory headers: a garbled one is ignored, never fatal


def parse_app_usage(headers: Mapping[str, str]) -> Usage | None:
    """`X-App-Usage: {"call_count":%, "total_cputime":%, "total_time":%}`; None if absent or garbled."""
    raw = _json_header(headers, "x-app-usage")
    return _usage(raw) if isinstance(raw, dict) else None


def parse_business_usage(headers: Mapping[str, str]) -> list[Usage]:
    """`X-Business-Use-Case-Usage: {"<id>": [{type, call_count, ..., estimated_time_to_regain_access}]}`."""
    raw = _json_header(headers, "x-business-use-case-usage")
    out: list[Usage] = []
    for business_id, entries in raw.items() if isinstance(raw, dict) else ():
        for entry in entries if isinstance(entries, list) else ():
            if isinstance(entry, dict):
                regain = as_int(entry.get("estimated_time_to_regain_access")) or 0
                kind = entry.get("type") if isinstance(entry.get("type"), str) else None
                extra = {"business_id": str(business_id), "type": kind}
                out.append(_usage(entry, estimated_time_to_regain_access=regain, **extra))
    return out


def retry_after_seconds(headers: Mapping[str, str]) -> float | None:
    """How long Meta asked us to wait: the larger of `Retry-After` (seconds) and BUC regain time."""
    hints = [u.estimated_time_to_regain_access * 60.0 for u in parse_business_usage(headers)]
    retry_after = header(headers, "retry-after")
    if retry_after:
        try:
            hints.append(float(retry_after))
        except ValueError:
            pass  # the HTTP-date form: Graph does not send it; exponential back-off covers it
    hints = [h for h in hints if h > 0]
    return max(hints) if hints else None


def usage_peak(headers: Mapping[str, str]) -> int:
    """The highest usage percentage any usage header reports (0 when none)."""
    app = parse_app_usage(headers)
    return max([u.peak for u in parse_business_usage(headers)] + [app.peak if app else 0])


def backoff_seconds(
    source: BaseException | Mapping[str, str] | None, attempt: int, cap: float, jitter: float = 0.0
) -> float:
    """Seconds to sleep before retry number `attempt` (0-based), never more than `cap`.

    Meta's own hint wins (an error's `retry_after`, or the headers' Retry-After / BUC regain time);
    otherwise exponential, 1 s doubling, plus the caller's `jitter` (e.g. random.random()).
    """
    if isinstance(source, BaseException):
        hint = getattr(source, "retry_after", None)
    elif source is not None:
        hint = retry_after_seconds(source)
    else:
        hint = None
    if hint is not None:
        return float(min(hint, cap))
    return float(min(cap, BACKOFF_BASE_S * 2 ** min(attempt, 32) + jitter))
