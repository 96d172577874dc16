"""The drill report as one standalone HTML page: each scenario drawn as a timeline (pure).

No script, font, stylesheet or image from anywhere: inline CSS and inline SVG, so the file opens from a
laptop with no network. Each scenario is one SVG: the time axis starts at the anomaly; the detection
marks (anomaly, alert fired, alert received, run started) are vertical lines; each step of the run is a
bar from its first record to its last, approvals (asked -> given) and dashboard steps in their own
colour; the moment the last containment step was done closes it. Where the minutes went is the width.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from typing import Any

from waguard.drills.report import is_human, seconds, verdict

WIDTH, LABEL_W, ROW_H, TOP = 980, 230, 20, 34
PLOT_W = WIDTH - LABEL_W - 20
MARKS = (  # key in result["marks"], label, colour
    ("anomaly", "anomaly", "#b91c1c"),
    ("alert_fired", "alert fired", "#d97706"),
    ("alert_received", "alert received", "#ca8a04"),
    ("run_created", "run created", "#2563eb"),
    ("run_started", "run started", "#1d4ed8"),
    ("contained", "contained", "#15803d"),
)
STEP_COLOURS = {"human": "#a855f7", "done": "#16a34a", "already": "#65a30d", "failed": "#dc2626"}
CSS = """
body{font:14px/1.4 system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#111;background:#fafafa}
h1{font-size:22px;margin:0 0 4px} h2{font-size:17px;margin:28px 0 6px}
.verdict{font-weight:600;margin:6px 0 16px} .pass{color:#15803d} .fail{color:#b91c1c}
table{border-collapse:collapse;margin:8px 0;background:#fff}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f0f0f0} td.num{text-align:right;font-variant-numeric:tabular-nums}
svg{background:#fff;border:1px solid #ddd} svg text{font:12px system-ui,sans-serif}
.legend span{display:inline-block;margin-right:14px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.error{color:#b91c1c}
"""


def _unix(value: Any) -> float | None:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def _step_colour(step: dict[str, Any]) -> str:
    if is_human(step["name"]):
        return STEP_COLOURS["human"]
    return STEP_COLOURS.get(step.get("outcome", ""), "#64748b")


def timeline_svg(s: dict[str, Any]) -> str:
    """One scenario's timeline (pure): marks as lines, steps as bars, seconds from the anomaly."""
    marks = {k: v for k, v in (s.get("marks") or {}).items() if isinstance(v, int | float)}
    steps = [st for st in s.get("steps") or [] if _unix(st.get("started_at")) is not None]
    t0 = marks.get("anomaly") or min((_unix(st["started_at"]) or 0.0 for st in steps), default=0.0)
    ends = [*marks.values(), *((_unix(st.get("ended_at")) or 0.0) for st in steps)]
    span = max([e - t0 for e in ends] + [1.0])
    rows = 1 + len(steps)
    height = TOP + rows * ROW_H + 16

    def x(at: float) -> float:
        return LABEL_W + PLOT_W * max(0.0, at - t0) / span

    out = [
        f'<svg class="timeline" data-scenario="{escape(s["name"])}" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="timeline of {escape(s["name"])}">'
    ]
    for i in range(6):  # the time axis, in seconds from the anomaly
        at = t0 + span * i / 5
        out.append(
            f'<line x1="{x(at):.1f}" y1="{TOP - 6}" x2="{x(at):.1f}" y2="{height - 10}" stroke="#eee"/>'
            f'<text x="{x(at):.1f}" y="{TOP - 10}" text-anchor="middle" fill="#666">'
            f"+{span * i / 5:.0f} s</text>"
        )
    out.append(f'<text x="8" y="{TOP + 14}" font-weight="600">detection</text>')
    for key, label, colour in MARKS:
        if key not in marks:
            continue
        at = marks[key]
        out.append(
            f'<g class="mark" data-mark="{key}"><title>{label}: +{at - t0:.1f} s</title>'
            f'<line x1="{x(at):.1f}" y1="{TOP}" x2="{x(at):.1f}" y2="{height - 10}" stroke="{colour}" '
            f'stroke-width="2" stroke-dasharray="{"0" if key == "contained" else "4 3"}"/>'
            f'<circle cx="{x(at):.1f}" cy="{TOP + 10}" r="5" fill="{colour}"/></g>'
        )
    for i, st in enumerate(steps, start=1):
        y = TOP + i * ROW_H
        start, end = _unix(st["started_at"]) or t0, _unix(st.get("ended_at")) or t0
        w = max(3.0, x(end) - x(start))
        what = (f"{st['name']}: {st.get('outcome')}, +{start - t0:.1f} s to +{end - t0:.1f} s "
                f"({end - start:.1f} s)")
        out.append(
            f'<g class="step" data-step="{escape(st["name"])}"><title>{escape(what)}</title>'
            f'<text x="8" y="{y + 14}">{escape(st["name"][:30])}</text>'
            f'<rect x="{x(start):.1f}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" rx="2" '
            f'fill="{_step_colour(st)}"/></g>'
        )
    out.append("</svg>")
    return "".join(out)


def phases(s: dict[str, Any]) -> str:
    """Where the minutes went, in words: each stretch between the marks that were measured (pure)."""
    marks = s.get("marks") or {}
    order = [("anomaly", ""), ("alert_received", "to the alert at the intake"),
             ("run_started", "to the run started"), ("contained", "to contained")]
    parts, last = [], None
    for key, words in order:
        if isinstance(marks.get(key), int | float):
            if last is not None:
                parts.append(f"{marks[key] - last:.1f} s {words}")
            last = marks[key]
    if s.get("approval_wait_s"):
        parts.append(f"of which {s['approval_wait_s']:.1f} s waiting for people")
    return " · ".join(parts)


def _legend() -> str:
    items = [(label, colour) for _, label, colour in MARKS] + [
        ("approval / dashboard step (waiting for people)", STEP_COLOURS["human"]),
        ("step done", STEP_COLOURS["done"]),
        ("already so", STEP_COLOURS["already"]),
        ("failed", STEP_COLOURS["failed"]),
    ]
    return (
        '<p class="legend">'
        + "".join(f'<span><i style="background:{c}"></i>{escape(t)}</span>' for t, c in items)
        + "</p>"
    )


def _row(s: dict[str, Any]) -> str:
    cells = [
        escape(s["name"]),
        escape(s.get("playbook") or "none"),
        escape(str(s.get("status"))),
        "yes" if s.get("verified") else "<b>no</b>",
    ]
    nums = [seconds(s.get(k)) for k in ("detected_s", "detection_s", "approval_wait_s", "time_to_contain_s")]
    met = (
        "met"
        if s.get("objectives_met")
        else "missed: " + escape("; ".join(s.get("objectives_missed") or ["?"]))
    )
    return (
        "<tr>"
        + "".join(f"<td>{c}</td>" for c in cells)
        + "".join(f'<td class="num">{n}</td>' for n in nums)
        + f"<td>{met}</td></tr>"
    )


def html(report: dict[str, Any]) -> str:
    """The whole page (pure)."""
    passed = report.get("passed")
    sentence = report.get("verdict") or verdict(report)[1]
    out = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        "<meta name=viewport content='width=device-width,initial-scale=1'>",
        f"<title>Game-day drill: {'PASS' if passed else 'FAIL'}</title><style>{CSS}</style></head><body>",
        f"<h1>Game-day drill: {'PASS' if passed else 'FAIL'}</h1>",
        f'<p class="verdict {"pass" if passed else "fail"}">{escape(sentence)}</p>',
        f"<p>Started {escape(str(report.get('started_at')))}, took {seconds(report.get('duration_s'))} s, "
        f"{len(report['scenarios'])} scenario(s), canary hits: <b>{report.get('canary_hits', 0)}</b>.</p>",
        "<table><tr><th>scenario</th><th>playbook</th><th>outcome</th><th>verified</th>"
        "<th>anomaly → alert (s)</th><th>→ run started (s)</th><th>waiting for people (s)</th>"
        "<th>→ contained (s)</th><th>objectives</th></tr>",
        *(_row(s) for s in report["scenarios"]),
        "</table>",
        _legend(),
    ]
    for s in report["scenarios"]:
        out.append(f'<section class="scenario" id="{escape(s["name"])}"><h2>{escape(s["name"])}</h2>')
        out.append(
            f"<p>Run <code>{escape(str(s.get('run_id')))}</code>, incident "
            f"<code>{escape(str(s.get('incident_id')))}</code>.</p>"
        )
        if s.get("error"):
            out.append(f'<p class="error">Error: {escape(str(s["error"]))}</p>')
        if phases(s):
            out.append(f'<p class="phases">{escape(phases(s))}</p>')
        out.append(timeline_svg(s))
        checks = s.get("checks") or []
        if checks:
            out.append(
                "<table><tr><th>check</th><th>ok</th><th>found</th></tr>"
                + "".join(
                    f"<tr><td>{escape(c['check'])}</td><td>{'yes' if c['ok'] else '<b>no</b>'}</td>"
                    f"<td>{escape(str(c['detail']))}</td></tr>"
                    for c in checks
                )
                + "</table>"
            )
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"
