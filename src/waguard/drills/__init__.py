"""Game-day drills: scenarios, the stand-in responder, faults, verification, scoring and the report."""
