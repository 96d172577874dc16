"""Property tests: thousands of hostile deliveries start no run, and the service keeps answering.

Every hostile delivery is built from one that *would* start a new run (a fresh incident each time),
then broken one way: auth header dropped, forged, truncated or made with the wrong secret; body
tampered after signing; oversize; wrong content type; wrong event type; stale timestamp; correctly
signed but malformed (not JSON, wrong top-level type, truncated, a field of the wrong type); or an
exact replay of a delivery that already started its run. So if a check were missing, a run would
start and the test would catch it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.intake import (
    RUNBOOKS,
    T0,
    FakeClock,
    IntakeSecrets,
    RecordingRuns,
    am_headers,
    am_notification,
    click_body,
    dumps,
    fresh_secrets,
    github_alert,
    github_headers,
    grafana_headers,
    grafana_notification,
    intake_settings,
    meta_delivery,
    meta_headers,
    slack_headers,
    template_change,
    write_secrets,
)
from waguard.intake.app import create_app
from waguard.intake.slack_actions import RunInfo
from waguard.intake.starter import RecordingStarter
from waguard.local.processes import ServedApp
from waguard.vault.client import VaultClient

pytestmark = pytest.mark.slow
LIMIT = 4096
# Meta deliveries act only on registered WABAs (intake.businesses): the registry the app reads lists
# these, so each legit delivery is about a WABA of ours and one that gets through would open an incident.
META_WABAS = 1000
META_WABA_BASE = 3_100_000_000


def meta_waba(n: int) -> str:
    return str(META_WABA_BASE + n % META_WABAS)


def registry_with_meta_wabas(runbooks: Path) -> Path:
    """A copy of runbooks/ whose first business also holds the WABAs the legit Meta deliveries name."""
    shutil.copytree(RUNBOOKS, runbooks)
    registry = yaml.safe_load((runbooks / "businesses.yaml").read_text())
    registry["businesses"][0]["wabas"] += [{"waba_id": meta_waba(n)} for n in range(META_WABAS)]
    (runbooks / "businesses.yaml").write_text(yaml.safe_dump(registry))
    return runbooks
AUTH_HEADERS = {"authorization", "x-hub-signature-256", "x-grafana-alerting-signature", "x-slack-signature"}


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: bytes
    method: str = "POST"


@dataclass
class Target:
    client: httpx.Client
    starter: RecordingStarter
    runs: RecordingRuns
    secrets: IntakeSecrets
    replays: list[Request]
    count_incidents: Callable[[], int]
    settle: Callable[[], None]


# --- deliveries that would start a run --------------------------------------------------------------


def legit(source: str, s: IntakeSecrets, n: int, body: bytes | None = None) -> Request:
    """A correctly authenticated delivery about a fresh incident `n` (or with `body`, signed as is)."""
    if source == "alertmanager":
        body = body if body is not None else dumps(am_notification(group=f"G{n}", waba=str(n)))
        return Request("/alerts/alertmanager", am_headers(s.alertmanager_token), body)
    if source == "github":
        body = body if body is not None else dumps(github_alert(number=n, secret=s.meta_token))
        return Request("/alerts/github", github_headers(s.github_secret, body, f"d-{uuid.uuid4()}"), body)
    if source == "grafana":
        body = body if body is not None else dumps(grafana_notification(group=f"G{n}", waba=str(n)))
        return Request("/alerts/grafana", grafana_headers(s.grafana_secret, body, int(T0)), body)
    body = body if body is not None else dumps(meta_delivery(template_change("FLAGGED"), waba=meta_waba(n)))
    return Request("/webhooks/whatsapp", meta_headers(s.app_secret, body), body)


SOURCES = ("alertmanager", "github", "grafana", "meta")
# Field -> values that make a payload invalid (no bool for ints: pydantic would accept True as 1).
BAD_FIELDS: dict[str, list[tuple[str, list[Any]]]] = {
    "alertmanager": [
        ("version", ["3", 4, None]),
        ("alerts", [None, "x", 5, {"a": 1}]),
        ("groupKey", [None, "", 7, []]),
        ("status", ["exploded", None, 1]),
    ],
    "grafana": [("version", ["4", 1, None]), ("alerts", [None, "x"]), ("groupKey", ["", None])],
    "github": [
        ("alert", [None, "x", [], {"number": "x"}, {"number": 0}, {"number": 1.5}]),
        ("repository", [None, {"id": "x"}, {}]),
        ("action", [None, "", 5]),
    ],
    "meta": [("object", ["page", None, 1]), ("entry", [None, "x", {"id": "1"}])],
}


@st.composite
def hostile(draw: st.DrawFn, target: Target) -> tuple[str, Request]:
    s = target.secrets
    source = draw(st.sampled_from(SOURCES))
    n = draw(st.integers(10_000, 10**9))
    req = legit(source, s, n)
    kind = draw(
        st.sampled_from(
            [
                "no-auth",
                "forged",
                "truncated",
                "wrong-secret",
                "tampered",
                "oversize",
                "content-type",
                "signed-junk",
                "replay",
                "stale",
                "wrong-event",
                "method",
            ]
        )
    )
    if kind == "tampered" and source == "alertmanager":
        kind = "forged"  # a bearer token covers no body: whoever holds it may send any body
    headers = dict(req.headers)
    auth = next(k for k in headers if k.lower() in AUTH_HEADERS)
    if kind == "no-auth":
        del headers[auth]
    elif kind == "forged":
        headers[auth] = draw(
            st.one_of(
                st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=80),
                st.just("sha256=" + "0" * 64),
                st.just("Bearer " + "x" * 40),
                st.just("0" * 64),
            )
        )
    elif kind == "truncated":
        headers[auth] = headers[auth][: draw(st.integers(0, len(headers[auth]) - 1))]
    elif kind == "wrong-secret":
        wrong = IntakeSecrets(*[v + "x" for v in vars(s).values()])
        headers = legit(source, wrong, n, req.body).headers
    elif kind == "tampered":
        body = bytearray(req.body)
        i = draw(st.integers(0, len(body) - 1))
        body[i] ^= draw(st.integers(1, 255))
        return kind, Request(req.path, headers, bytes(body))
    elif kind == "oversize":
        pad = json.loads(req.body) | {"pad": "x" * (LIMIT + draw(st.integers(1, 5000)))}
        return kind, legit(source, s, n, dumps(pad))  # signed over the oversize body: size still refuses
    elif kind == "content-type":
        headers["Content-Type"] = draw(
            st.sampled_from(
                [
                    "text/plain",
                    "application/x-www-form-urlencoded",
                    "application/xml",
                    "",
                    "multipart/form-data",
                ]
            )
        )
    elif kind == "signed-junk":
        return kind, legit(source, s, n, junk(draw, source, req.body))
    elif kind == "replay":
        return kind, draw(st.sampled_from(target.replays))
    elif kind == "stale" and source == "grafana":
        body = req.body
        return kind, Request(
            req.path, grafana_headers(s.grafana_secret, body, int(T0) - draw(st.integers(301, 10**6))), body
        )
    elif kind == "wrong-event" and source == "github":
        headers["X-GitHub-Event"] = draw(st.sampled_from(["push", "", "SECRET_SCANNING_ALERT", "issues"]))
    elif kind == "method":
        return kind, Request(req.path, headers, req.body, draw(st.sampled_from(["PUT", "DELETE", "PATCH"])))
    else:  # stale/wrong-event where they do not apply: drop the auth header instead
        del headers[auth]
    if auth in headers:  # HTTP clients refuse header values with surrounding whitespace
        headers[auth] = headers[auth].strip()
    return kind, Request(req.path, headers, req.body)


def junk(draw: st.DrawFn, source: str, good: bytes) -> bytes:
    """A body that is not a valid delivery for `source` (drawn without building strategies per example)."""
    payload = json.loads(good)
    mode = draw(st.sampled_from(["not-json", "wrong-top", "truncated", "bad-field", "missing"]))
    if mode == "not-json":
        body = draw(st.binary(max_size=300))
        return body if not _is_json(body) else body + b"{"
    if mode == "wrong-top":
        return draw(st.sampled_from([b"[]", b"null", b"42", b'"text"', b"[{}]", b"true"]))
    if mode == "truncated":
        return good[: draw(st.integers(1, len(good) - 1))]  # a strict prefix of an object is never JSON
    name, values = draw(st.sampled_from(BAD_FIELDS[source]))
    if mode == "bad-field":
        return dumps(payload | {name: draw(st.sampled_from(values))})
    return dumps({key: val for key, val in payload.items() if key != name})


def _is_json(b: bytes) -> bool:
    try:
        json.loads(b)
    except ValueError:
        return False
    return True


# --- the app under attack -----------------------------------------------------------------------


@pytest.fixture
def target(openbao, vault_prefix: str, tmp_path: Path) -> Iterator[Target]:
    vault = VaultClient.from_settings(openbao.settings)
    s = fresh_secrets()
    cfg = intake_settings(vault_prefix, tmp_path / "intake", max_body_bytes=LIMIT)
    cfg = cfg.model_copy(update={"runbooks_dir": registry_with_meta_wabas(tmp_path / "runbooks")})
    asyncio.run(write_secrets(vault, cfg, s))
    starter, runs = RecordingStarter(), RecordingRuns()
    app = create_app(cfg, vault, starter, FakeClock(), runs=runs)
    db = cfg.intake.state_dir / "intake.sqlite3"

    def count_incidents() -> int:  # a connection of our own: the server thread owns the app's
        with contextlib.closing(sqlite3.connect(db)) as conn:
            return int(conn.execute("SELECT count(*) FROM incidents").fetchone()[0])

    def settle() -> None:  # wait (not assert) until every opened incident's start went through
        for _ in range(500):
            with contextlib.closing(sqlite3.connect(db)) as conn:
                if not conn.execute("SELECT count(*) FROM incidents WHERE status = 'pending'").fetchone()[0]:
                    return
            time.sleep(0.01)

    # Real HTTP on loopback: hostile input meets the HTTP parser too, not only the app. The server
    # thread and this one share the GIL; a short switch interval keeps the ping-pong quick.
    switch = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    try:  # restored even when set-up or the test fails: later tests in the process keep the default
        with ServedApp(app, name="intake") as served, httpx.Client(base_url=served.url, timeout=10) as client:
            replays = [legit(src, s, i) for i, src in enumerate(SOURCES, start=1)]
            for r in replays:
                assert client.post(r.path, content=r.body, headers=r.headers).json()["outcome"] == "started"
            settle()
            assert len(starter.starts) == len(SOURCES)
            yield Target(client, starter, runs, s, replays, count_incidents, settle)
    finally:
        sys.setswitchinterval(switch)
        vault.close()


HYPOTHESIS = settings(
    max_examples=2000,
    deadline=None,
    derandomize=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)


def test_hostile_alert_deliveries_start_nothing(target: Target) -> None:
    baseline_runs, baseline_incidents = len(target.starter.starts), target.count_incidents()
    seen: dict[str, int] = {}

    @HYPOTHESIS
    @given(data=st.data())
    def attack(data: st.DataObject) -> None:
        kind, req = data.draw(hostile(target))
        seen[kind] = seen.get(kind, 0) + 1
        r = target.client.request(req.method, req.path, content=req.body, headers=req.headers)
        assert r.status_code < 500, (kind, r.status_code)
        answer = r.json()
        if kind in ("no-auth", "forged", "truncated", "wrong-secret", "tampered", "stale"):
            assert r.status_code == 401 or (kind == "tampered" and r.status_code in (400, 401, 422))
        elif kind == "oversize":
            assert r.status_code == 413
        elif kind == "content-type":
            assert r.status_code == 415
        elif kind == "method":
            assert r.status_code == 405
        elif kind == "replay":
            assert (r.status_code, answer["outcome"]) == (200, "duplicate")
        if r.status_code >= 400:
            assert "error" in answer
        assert target.count_incidents() == baseline_incidents, (kind, answer)

    attack()
    target.settle()
    assert len(target.starter.starts) == baseline_runs
    assert sum(seen.values()) >= 1500 and len(seen) == 12
    # Still answering, and still doing its job.
    assert target.client.get("/healthz").json() == {"status": "ok"}
    fresh = legit("github", target.secrets, 99)
    assert (
        target.client.post(fresh.path, content=fresh.body, headers=fresh.headers).json()["outcome"]
        == "started"
    )
    target.settle()
    assert len(target.starter.starts) == baseline_runs + 1


def test_hostile_slack_clicks_cast_no_vote(target: Target) -> None:
    run = uuid.uuid4()
    target.runs.runs[run] = RunInfo("leaked_secret", "intake:github")
    s = target.secrets
    good = click_body("U0ONCALL", run, "approve-rotation", "n0nce-abcdefgh")
    first = slack_headers(s.slack_signing_secret, good, int(T0))
    assert target.client.post("/slack/interactions", content=good, headers=first).status_code == 200
    assert len(target.runs.votes) == 1

    @HYPOTHESIS.__class__(HYPOTHESIS, max_examples=500)
    @given(
        kind=st.sampled_from(["forged", "stale", "tampered", "replay", "stranger", "junk", "truncated"]),
        data=st.data(),
    )
    def attack(kind: str, data: st.DataObject) -> None:
        user = "U0SECLEAD" if kind != "stranger" else data.draw(st.sampled_from(["U0EVIL", "U0NOBODY"]))
        body = click_body(
            user,
            run,
            "approve-rotation",
            "n0nce-abcdefgh",
            action_ts=f"{data.draw(st.integers(1, 10**9))}.000001",
        )
        ts = (
            int(T0)
            if kind != "stale"
            else int(T0) + data.draw(st.sampled_from([-1, 1])) * data.draw(st.integers(301, 10**6))
        )
        headers = slack_headers(s.slack_signing_secret if kind != "forged" else "forged-secret", body, ts)
        if kind == "tampered":
            body = body.replace(b"U0SECLEAD", b"U0CISO")
        elif kind == "replay":
            body, headers = good, first
        elif kind == "junk":
            body = data.draw(st.binary(max_size=400))
            headers = slack_headers(s.slack_signing_secret, body, int(T0))
        elif kind == "truncated":
            headers["X-Slack-Signature"] = headers["X-Slack-Signature"][: data.draw(st.integers(0, 66))]
        r = target.client.post("/slack/interactions", content=body, headers=headers)
        assert (
            r.status_code
            in {
                "forged": {401},
                "stale": {401},
                "tampered": {401},
                "replay": {409},
                "stranger": {403},
                "junk": {400, 409, 415},
                "truncated": {401},
            }[kind]
        ), kind
        assert len(target.runs.votes) == 1

    attack()
    assert target.client.get("/healthz").status_code == 200
