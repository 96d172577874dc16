"""What a log line looks like on a console, to check that `waguard up` and `waguard drill` print none."""

from __future__ import annotations

import re

LOG_LINE = re.compile(
    r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) "  # logging's and ours
    r"|^\d\d:\d\d:\d\d\.\d{3} \| (DEBUG|INFO|WARNING|ERROR|CRITICAL)"  # Prefect's console handler
    r"|^(DEBUG|INFO|WARNING|ERROR|CRITICAL):\s"  # logging.lastResort / uvicorn's default format
    r"|^Traceback \(most recent call last\)"
    r"|^\S+\.py:\d+: \w*Warning: ")  # an unrouted Python warning


def log_lines(text: str) -> list[str]:
    """The lines of `text` that are log records (or tracebacks), not progress."""
    return [line for line in text.splitlines() if LOG_LINE.search(line)]
