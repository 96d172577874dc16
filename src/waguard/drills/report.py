"""Scoring and the drill report: the incident timeline becomes steps and times (pure functions), the
results become JSON, Markdown and the console table."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from waguard.playbook.timeline import TimelineEvent

NOT_CONTAINMENT = {"open", "close", "snapshot-evidence"}
# How a run that did its job closes: a playbook contained the incident, a scheduled rotation rotated.
CONTAINED = frozenset({"contained", "rotated"})
HUMAN_STEPS = ("approve", "reset-app-secret")  # waiting for a person: approvals and dashboard steps


def _t(event: TimelineEvent) -> float:
    return datetime.fromisoformat(event.at).timestamp()


def steps(events: list[TimelineEvent]) -> list[dict[str, Any]]:
    """One row per step as it happened, in order: first and last record, last outcome (pure).

    A step still in progress ("started") collects its later records; a step that comes back after
    it ended (the closing evidence snapshot, a re-run's steps) is a new row.
    """
    rows: list[dict[str, Any]] = []
    for e in events:
        row = next((r for r in reversed(rows) if r["name"] == e.step), None)
        if row is None or e.step == "open" or (row is not rows[-1] and row["outcome"] != "started"):
            row = {"name": e.step, "started_at": e.at, "ended_at": e.at, "outcome": e.outcome}
            rows.append(row)
        row["ended_at"], row["outcome"] = e.at, e.outcome
    return rows


def is_human(step: str) -> bool:
    return step.startswith(HUMAN_STEPS)


def approval_wait_s(events: list[TimelineEvent]) -> float:
    """Seconds the run waited for people: each approval's request -> decision, each dashboard step (pure)."""
    waiting: dict[str, float] = {}
    total = 0.0
    for e in events:
        if not is_human(e.step):
            continue
        if e.outcome == "started":
            waiting[e.step] = _t(e)
        elif e.outcome in ("decided", "done") and e.step in waiting:
            total += _t(e) - waiting.pop(e.step)
    return round(total, 3)


def contained_at(events: list[TimelineEvent]) -> float | None:
    """When the last containment step was verified (Unix seconds), if the run closed contained (pure)."""
    closes = [e for e in events if e.step == "close"]
    if not closes or closes[-1].outcome != "done" or closes[-1].detail not in CONTAINED:
        return None
    done = [e for e in events if e.step not in NOT_CONTAINMENT and not e.step.startswith("approve")
            and e.outcome in ("done", "already")]
    return _t(done[-1]) if done else _t(closes[-1])


def outcome(events: list[TimelineEvent]) -> str:
    closes = [e for e in events if e.step == "close"]
    if not closes:
        return "unfinished"
    last = closes[-1]
    return (
        last.detail if last.outcome == "done" else "failed-safe" if last.outcome == "failed" else last.outcome
    )


def missed_objectives(result: dict[str, Any], goals: dict[str, float]) -> list[str]:
    """Each objective a scenario missed, with what was measured (pure). Unmeasured counts as missed."""
    missed = []
    for key, label in (("time_to_contain_s", "time to contain"), ("detection_s", "detection"),
                       ("detected_s", "anomaly to alert")):
        if goals.get(key) is None:
            continue  # not an objective of this scenario (a storm that must start nothing has no run)
        value = result.get(key)
        if value is None:
            missed.append(f"{label} not measured (goal ≤ {goals[key]:g} s)")
        elif value > goals[key]:
            missed.append(f"{label} {value:.2f} s > {goals[key]:g} s")
    return missed


def verdict(report: dict[str, Any], *, require_objectives: bool = False) -> tuple[bool, str]:
    """Whether the drill passes, and the sentence that says why (pure).

    Passing means every scenario was contained and verified and no secret leaked; objectives are
    reported either way and fail the drill only with `require_objectives`.
    """
    scenarios = report["scenarios"]
    good = [s for s in scenarios if s.get("contained") and s.get("verified")]
    bad = [f"{s['name']} ({s['status']}{', not verified' if not s['verified'] else ''})"
           for s in scenarios if s not in good]
    missed = [f"{s['name']}: {'; '.join(s.get('objectives_missed') or ['missed'])}"
              for s in scenarios if not s.get("objectives_met")]
    contained = f"{len(good)}/{len(scenarios)} contained and verified" + (
        f" (not: {', '.join(bad)})" if bad else ""
    )
    goals = "objectives met" if not missed else f"objectives missed in {len(missed)}: {' | '.join(missed)}"
    leaks = f"; {report['canary_hits']} canary hit(s)" if report["canary_hits"] else ""
    ok = not bad and not report["canary_hits"] and (not missed or not require_objectives)
    return ok, f"{'PASS' if ok else 'FAIL'}: {contained}; {goals}{leaks}"


def table(report: dict[str, Any]) -> str:
    """The console table (pure)."""
    head = (f"{'scenario':<28} {'faults':<30} {'outcome':<12} {'verified':<9} {'contain s':>9} "
            f"{'human s':>8} "
            f"{'alert s':>8} {'detect s':>8} objectives")
    lines = [head, "-" * len(head)]
    for s in report["scenarios"]:
        faults = ",".join(f["name"] for f in s["faults"]) or "-"
        lines.append(
            f"{s['name']:<28} {faults[:30]:<30} {s['status']:<12} {'yes' if s['verified'] else 'NO':<9} "
            f"{seconds(s['time_to_contain_s']):>9} {seconds(s['approval_wait_s']):>8} "
            f"{seconds(s.get('detected_s')):>8} {seconds(s['detection_s']):>8} "
            f"{'met' if s.get('objectives_met') else 'missed'}"
        )
    lines.append(
        f"canary hits: {report['canary_hits']} in {report['canary']['places']} places "
        f"({report['canary']['secrets']} secrets)   drill took {seconds(report.get('duration_s'))} s"
    )
    lines.append(f"result: {report.get('verdict') or verdict(report)[1]}")
    return "\n".join(lines)


def seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _objectives(s: dict[str, Any]) -> str:
    goals = s.get("objectives") or {}
    met = "met" if s.get("objectives_met") else "missed: " + "; ".join(s.get("objectives_missed") or ["?"])
    labels = (("detected_s", "alert"), ("detection_s", "detect"), ("time_to_contain_s", "contain"))
    named = [f"{label} ≤ {goals[key]:g} s" for key, label in labels if goals.get(key)]
    return f"{met} ({', '.join(named) or 'none'})"


def markdown(report: dict[str, Any]) -> str:
    """The Markdown report (the file and the Prefect artifact) (pure)."""
    out = [f"# Game-day drill: {'PASS' if report['passed'] else 'FAIL'}", "",
           f"**{report.get('verdict') or verdict(report)[1]}**", "",
           f"Started {report['started_at']}, took {seconds(report.get('duration_s'))} s, "
           f"{len(report['scenarios'])} scenario(s), canary hits: **{report['canary_hits']}**.", "",
           "| scenario | playbook | faults | outcome | verified | time to contain (s) | human wait (s) "
           "| anomaly to alert (s) | detection (s) | objectives |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for s in report["scenarios"]:
        faults = ", ".join(f["name"] for f in s["faults"]) or "none"
        verified = "yes" if s["verified"] else "**no**"
        out.append(f"| {s['name']} | {s['playbook'] or 'none'} | {faults} | {s['status']} | {verified} "
                   f"| {seconds(s['time_to_contain_s'])} | {seconds(s['approval_wait_s'])} "
                   f"| {seconds(s.get('detected_s'))} | {seconds(s['detection_s'])} "
                   f"| {_objectives(s)} |")
    for s in report["scenarios"]:
        out += ["", f"## {s['name']}", "", f"Run `{s['run_id']}`, incident `{s['incident_id']}`."]
        if s.get("error"):
            out.append(f"\n**Error:** {s['error']}")
        out += ["", "| check | ok | found |", "|---|---|---|"]
        out += [f"| {c['check']} | {'yes' if c['ok'] else '**no**'} | {c['detail']} |" for c in s["checks"]]
        out += ["", "| step | started | ended | outcome |", "|---|---|---|---|"]
        out += [f"| {st['name']} | {st['started_at'][11:23]} | {st['ended_at'][11:23]} | {st['outcome']} |"
                for st in s["steps"]]
        for f in s["faults"]:
            out.append(f"\nFault `{f['name']}`: " + ("; ".join(f["notes"]) or "armed"))
    if report["canary"].get("hits"):
        out += ["", "## Canary hits", ""] + [f"- {h}" for h in report["canary"]["hits"]]
    return "\n".join(out) + "\n"
