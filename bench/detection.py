"""False positives of the shipped detection rules on normal traffic, and the drills' detection time.

    .venv/bin/python bench/detection.py [--replay-min 30] [--history-min 120] [--seed 14] [--drill-report R.json]

Generates the series the intake exports for a normal business (detection/metrics.md): two numbers whose
sends follow a working day (quiet at night, a morning ramp, a midday peak, noise on every step), the
statuses and pricing that follow them, a few throughput and pair-rate failures, two or three template
reviews an hour, a stray unsigned request now and then, and waguard's own scheduled rotation (a new
token, the old one revoked, a new PIN: Meta reports each, and the run's timeline says waguard did it).
`--history-min` of it comes first, so the rules' one-hour baselines are the day's own, then the
`--replay-min` replay, taken from the steepest part of the morning ramp.

The series are evaluated by Prometheus's own rule engine (`promtool test rules`) with the shipped rule
files unchanged, at the shipped evaluation interval (detection/prometheus.yml), every alert checked
silent at every evaluation: one firing anywhere is a false positive, and promtool names it.

With `--drill-report` (a `waguard drill` JSON report), the detection drills' anomaly -> alert-at-the-
intake times are read from it and their median is held to the goal too.

Prints the figures and `goals: met` when no alert fired (and the drills' p50 is <= 120 s). `--plant`
adds one real anomaly to the replay, to see the check report it (and `goals: NOT met`).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
DETECTION = ROOT / "detection"
WABA, NUMBERS = "3000000001", {"4000000001": 2.0, "4000000002": 0.3}  # sends/s at the day's peak
P50_GOAL_S = 120.0


def shipped_interval_s() -> int:
    text = yaml.safe_load((DETECTION / "prometheus.yml").read_text())["global"]["evaluation_interval"]
    return int(re.fullmatch(r"(\d+)s", text).group(1))  # type: ignore[union-attr]


def alert_names() -> list[str]:
    names = []
    for path in sorted((DETECTION / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text())["groups"]:
            names += [r["alert"] for r in group["rules"] if "alert" in r]
    return names


def day(hour: float) -> float:
    """Share of the peak send rate at this hour of the day: 15 % at night, a morning ramp, 14:00 peak."""
    if 6 <= hour <= 22:
        return 0.15 + 0.85 * math.sin(math.pi * (hour - 6) / 16) ** 1.5
    return 0.15


class Series:
    """One counter (or gauge) sampled every `step` seconds; None is a missing sample (not exported yet)."""

    def __init__(self, steps: int) -> None:
        self.values: list[float | None] = [None] * steps

    def add(self, i: int, amount: float) -> None:
        """A counter: from sample i on, `amount` more (the series appears at its first event)."""
        for j in range(i, len(self.values)):
            self.values[j] = (self.values[j] or 0.0) + amount

    def set_from(self, i: int, value: float) -> None:
        for j in range(i, len(self.values)):
            self.values[j] = value

    def text(self) -> str:
        return " ".join("_" if v is None else f"{v:g}" for v in self.values)


def traffic(minutes: int, step_s: int, start_hour: float, rng: random.Random) -> dict[str, Series]:
    """The intake's series for `minutes` of a normal day starting at `start_hour` (test time starts at 0)."""
    steps = minutes * 60 // step_s + 1
    out: dict[str, Series] = {}

    def series(name: str, **labels: str) -> Series:
        key = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
        return out.setdefault(key, Series(steps))

    def poisson(mean: float) -> int:
        # Knuth for small means, normal approximation above: counts per step, never negative.
        if mean > 30:
            return max(0, round(rng.gauss(mean, math.sqrt(mean))))
        limit, k, p = math.exp(-mean), 0, 1.0
        while True:
            p *= rng.random()
            if p <= limit:
                return k
            k += 1

    series("waguard_known_waba_info", waba_id=WABA).set_from(0, 1)
    for i in range(1, steps):
        hour = start_hour + i * step_s / 3600
        deliveries = 0
        for number, peak in NUMBERS.items():
            ids = {"waba_id": WABA, "phone_number_id": number}
            sent = poisson(peak * day(hour) * step_s * rng.uniform(0.7, 1.3))
            for status, share in (("sent", 1.0), ("delivered", 0.95), ("read", 0.6)):
                n = sent if status == "sent" else sum(rng.random() < share for _ in range(sent))
                if n:
                    series("waguard_meta_statuses_total", status=status, error_code="", **ids).add(i, n)
            if sent:
                series("waguard_meta_sent_pricing_total", category="utility", **ids).add(i, sent)
            for code, per_send in (("131056", 0.004), ("130429", 0.002), ("131026", 0.01)):
                failed = sum(rng.random() < per_send for _ in range(sent))
                if failed:
                    series("waguard_meta_statuses_total", status="failed", error_code=code, **ids).add(i, failed)
            deliveries += math.ceil(sent * 2.5 / 3)  # Meta batches a few statuses per delivery
        if rng.random() < step_s / 1200:  # a template reviewed about three times an hour
            template = f"{5000000100 + rng.randrange(40)}"
            for event in ("PENDING", "APPROVED"):
                series("waguard_meta_template_status_updates_total", waba_id=WABA, template_id=template,
                       template=f"promo_{template[-2:]}", event=event).add(i, 1)
            deliveries += 2
        if deliveries:
            series("waguard_intake_deliveries_total", source="meta", outcome="recorded").add(i, deliveries)
        if rng.random() < step_s / 600:  # a scanner without a signature every ten minutes or so
            series("waguard_intake_signature_failures_total", source="meta", reason="missing").add(i, 1)
            series("waguard_intake_deliveries_total", source="meta", outcome="rejected-signature").add(i, 1)
    # waguard's scheduled rotation half-way through: its timeline first, Meta's view a little later.
    at = steps // 2
    t = at * step_s
    for action in ("token_issued", "token_revoked", "pin_changed"):
        series("waguard_playbook_action_last_seconds", waba_id=WABA, action=action).set_from(at, t)
    series("waguard_meta_security_events_total", waba_id=WABA, event="PIN_CHANGED").add(at + 2, 1)
    for change in ("issued", "revoked"):
        series("waguard_meta_token_changes_total", waba_id=WABA, change=change).add(at + 20, 1)
    return out


def unit_test(series: dict[str, Series], minutes: int, step_s: int) -> dict:
    """A promtool unit test: the shipped rules, these series, every alert silent at every evaluation."""
    checks = [{"eval_time": f"{s}s", "alertname": name, "exp_alerts": []}
              for s in range(step_s, minutes * 60 + 1, step_s) for name in alert_names()]
    return {"rule_files": [str(p) for p in sorted((DETECTION / "rules").glob("*.yml"))],
            "evaluation_interval": f"{step_s}s",
            "tests": [{"name": "a normal day", "interval": f"{step_s}s",
                       "input_series": [{"series": k, "values": s.text()} for k, s in series.items()],
                       "alert_rule_test": checks}]}


def false_positives(output: str) -> list[str]:
    """The alerts promtool found firing where none were expected: 'alertname: X, time: Ts'."""
    return sorted(set(re.findall(r"alertname: (\w+), time: ([0-9hms.]+)", output)), key=lambda a: a[1])  # type: ignore[arg-type]


def drill_p50(path: Path) -> tuple[float | None, list[tuple[str, float]]]:
    report = json.loads(path.read_text())
    times = [(s["name"], s["detected_s"]) for s in report["scenarios"] if s.get("detected_s") is not None]
    return (statistics.median(t for _, t in times) if times else None), times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--replay-min", type=int, default=30)
    ap.add_argument("--history-min", type=int, default=120)
    ap.add_argument("--start-hour", type=float, default=6.5, help="hour of day the history starts (the ramp)")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--drill-report", type=Path)
    ap.add_argument("--plant", action="store_true",
                    help="plant one real anomaly (a two-step reset request) in the replay: the check must see it")
    args = ap.parse_args()
    promtool = shutil.which("promtool")
    if promtool is None:
        print("promtool not found: sh scripts/sysdeps.sh installs Debian's prometheus", file=sys.stderr)
        return 2
    step = shipped_interval_s()
    minutes = args.history_min + args.replay_min
    series = traffic(minutes, step, args.start_hour, random.Random(args.seed))
    if args.plant:  # proves the harness sees a firing alert: this run must report one and NOT met
        planted = Series(len(next(iter(series.values())).values))
        planted.add(args.history_min * 60 // step + 1, 1)
        series[f'waguard_meta_security_events_total{{event="PIN_RESET_REQUEST",waba_id="{WABA}"}}'] = planted
    test = unit_test(series, minutes, step)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "normal-day.yml"
        path.write_text(yaml.safe_dump(test, sort_keys=False, width=1 << 20))
        started = time.monotonic()
        done = subprocess.run([promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=1800)
        took = time.monotonic() - started
    evaluations = len(test["tests"][0]["alert_rule_test"])
    fired = false_positives(done.stdout + done.stderr)
    sends = sum(s.values[-1] or 0 for k, s in series.items() if 'status="sent"' in k)
    print(f"normal traffic: {minutes} min at {step} s steps from {args.start_hour:g}:00 "
          f"({args.history_min} min of history, then the {args.replay_min} min replay), {len(series)} series, "
          f"{sends:.0f} sends, waguard's own rotation half-way")
    print(f"shipped rules: {len(alert_names())} alerts checked silent at {evaluations} (alert, evaluation) "
          f"points by promtool in {took:.1f} s")
    if done.returncode != 0 and not fired:
        print(done.stdout[-3000:] + done.stderr[-3000:], file=sys.stderr)
        print("promtool failed without naming an alert: see above")
        return 2
    print(f"false positives: {len(fired)}" + "".join(f"\n  {name} firing at {at}" for name, at in fired[:20]))
    met = not fired
    if args.drill_report:
        p50, times = drill_p50(args.drill_report)
        for name, t in times:
            print(f"drill {name}: anomaly -> alert at the intake {t:.1f} s")
        ok = p50 is not None and p50 <= P50_GOAL_S
        print(f"detection drills p50: {'-' if p50 is None else f'{p50:.1f}'} s (goal <= {P50_GOAL_S:g} s): "
              f"{'met' if ok else 'NOT met'}")
        met = met and ok
    print(f"goals: {'met' if met else 'NOT met'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
