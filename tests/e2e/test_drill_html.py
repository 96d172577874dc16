"""The drill's HTML report (issue 14.7) in the real browser the UI test uses (Playwright driving Debian's
chromium), opened from a file with every network request refused: it renders, and every scenario is drawn
as a timeline with its detection marks and one bar per step."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.e2e.test_prefect_ui import CHROMIUM, CHROMIUM_ARGS, _require_browser
from waguard.drills.html_report import html
from waguard.drills.report import verdict

pytestmark = pytest.mark.slow
T0 = 1_795_980_000.0


def iso(offset_s: float) -> str:
    return datetime.fromtimestamp(T0 + offset_s, UTC).isoformat()


def detection_drill() -> dict:
    """A scenario as the runner reports it: a behaviour detected by the rules, then the run."""
    steps = [("open", 31.2, 31.3, "started"), ("snapshot-evidence", 31.3, 32.0, "done"),
             ("approve-containment", 32.1, 33.4, "decided"), ("remove-unknown-users", 33.5, 34.0, "done"),
             ("deregister-numbers", 34.0, 35.1, "done"), ("new-two-step-pin", 35.1, 35.9, "done"),
             ("close", 36.0, 36.0, "done")]
    return {"name": "twostep-reset-unlisted", "playbook": "account-takeover", "run_id": "r-1", "incident_id": "i-1",
            "status": "contained", "contained": True, "verified": True, "detected_s": 29.8, "detection_s": 31.2,
            "approval_wait_s": 1.3, "time_to_contain_s": 35.9, "objectives_met": True, "error": None,
            "marks": {"anomaly": T0, "alert_fired": T0 + 29.1, "alert_received": T0 + 29.8,
                      "run_created": T0 + 30.1, "run_started": T0 + 31.2, "contained": T0 + 35.9},
            "steps": [{"name": n, "started_at": iso(a), "ended_at": iso(b), "outcome": o} for n, a, b, o in steps],
            "checks": [{"check": "pin_rotated", "ok": True, "detail": "2 PIN(s) = Vault's new PIN"}], "faults": []}


def storm() -> dict:
    """A storm that must start nothing: detection marks only, no run."""
    return {"name": "forged-signature-storm", "playbook": None, "run_id": None, "incident_id": None,
            "status": "alerted, nothing started", "contained": True, "verified": True, "detected_s": 341.0,
            "detection_s": None, "approval_wait_s": None, "time_to_contain_s": None, "objectives_met": True,
            "error": None, "marks": {"anomaly": T0, "alert_fired": T0 + 310.4, "alert_received": T0 + 341.0},
            "steps": [], "checks": [{"check": "nothing_changed", "ok": True, "detail": "no mutating Graph call"}],
            "faults": []}


def report() -> dict:
    r = {"started_at": iso(0), "duration_s": 400.0, "scenarios": [detection_drill(), storm()], "canary_hits": 0,
         "canary": {"places": 60, "secrets": 12, "hits": []}}
    r["passed"], r["verdict"] = verdict(r)
    return r


def test_the_html_report_draws_every_scenario_offline(tmp_path: Path) -> None:
    _require_browser()
    from playwright.sync_api import sync_playwright

    page_file = tmp_path / "drill.html"
    page_file.write_text(html(report()))
    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            page = browser.new_page()

            def refuse_the_network(route) -> None:  # a standalone page asks for nothing
                requested.append(route.request.url)
                if route.request.url.startswith("file://"):
                    route.continue_()
                else:
                    route.abort()

            page.route("**/*", refuse_the_network)
            page.goto(page_file.as_uri())
            assert page.title() == "Game-day drill: PASS"
            sections = page.locator("section.scenario")
            assert sections.count() == 2
            for scenario in report()["scenarios"]:
                svg = page.locator(f'svg.timeline[data-scenario="{scenario["name"]}"]')
                box = svg.bounding_box()
                assert box is not None and box["width"] > 500 and box["height"] > 40, scenario["name"]
                drawn = svg.locator("g.mark").evaluate_all("els => els.map(e => e.dataset.mark)")
                assert drawn == list(scenario["marks"]), scenario["name"]
                bars = svg.locator("g.step rect")
                assert bars.count() == len(scenario["steps"])
                for i in range(bars.count()):
                    bar = bars.nth(i).bounding_box()
                    assert bar is not None and bar["width"] >= 3  # visibly drawn, even an instant step
            # The marks sit where their times say: alert received right of fired, contained last.
            svg = page.locator('svg.timeline[data-scenario="twostep-reset-unlisted"]')
            xs = {m: svg.locator(f'g.mark[data-mark="{m}"] line').bounding_box()["x"]
                  for m in ("anomaly", "alert_fired", "alert_received", "contained")}
            assert xs["anomaly"] < xs["alert_fired"] < xs["alert_received"] < xs["contained"]
            assert "341.00" in page.locator("table").first.inner_text()
            assert page.locator("section.scenario p.phases").first.inner_text() == (
                "29.8 s to the alert at the intake · 1.4 s to the run started · 4.7 s to contained · "
                "of which 1.3 s waiting for people")
            page.screenshot(path=str(tmp_path / "drill.png"), full_page=True)
        finally:
            browser.close()
    assert [u for u in requested if not u.startswith("file://")] == []
