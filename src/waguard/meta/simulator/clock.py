"""The simulator's settable clock: Meta's windows (token expiry, registration budgets) in drills that
cannot wait days."""

from __future__ import annotations

import time


class SimClock:
    """The built-in settable clock: wall time plus an offset that POST /_sim/clock advances."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back: Meta's windows only move one way)."""
        if seconds < 0:
            raise ValueError("the clock only moves forward")
        self.offset += seconds
