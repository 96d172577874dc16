"""Hostile JSON shapes in correctly signed bodies, on all five endpoints: nesting far deeper than any
sender uses, and duplicate keys. Each is a clear 400 with an audit record and a metric, and
starts or votes nothing (issue 11.2: a 10,000-deep body used to end in a RecursionError 500)."""

from __future__ import annotations

import uuid
from urllib.parse import urlencode

import pytest

import tests.fixtures.intake as fx
from tests.fixtures.intake import (
    Harness,
    am_headers,
    audit,
    github_headers,
    grafana_headers,
    meta_headers,
    slack_headers,
)

intake = fx.intake
intake_env = fx.intake_env

pytestmark = pytest.mark.slow
DEEP = 10_000


def deep_json(depth: int) -> str:
    """A valid JSON object whose `labels` value is nested `depth` levels deep."""
    return '{"version":"4","labels":' + "[" * depth + "]" * depth + "}"


def signed(h: Harness, source: str, body: bytes) -> tuple[str, bytes, dict[str, str]]:
    """The endpoint, body and correct authentication headers for `source`."""
    s = h.env.secrets
    if source == "alertmanager":
        return "/alerts/alertmanager", body, am_headers(s.alertmanager_token)
    if source == "github":
        return "/alerts/github", body, github_headers(s.github_secret, body)
    if source == "grafana":
        return "/alerts/grafana", body, grafana_headers(s.grafana_secret, body, int(h.clock.now))
    if source == "meta":
        return "/webhooks/whatsapp", body, meta_headers(s.app_secret, body)
    form = urlencode({"payload": body.decode()}).encode()  # Slack: form-encoded JSON in payload=
    return "/slack/interactions", form, slack_headers(s.slack_signing_secret, form, int(h.clock.now))


SOURCES = ("alertmanager", "github", "grafana", "meta", "slack")


@pytest.mark.parametrize("source", SOURCES)
@pytest.mark.parametrize(
    ("body", "error"),
    [
        (deep_json(DEEP).encode(), "too_deep"),
        (b'{"version":"4","version":"4","alerts":[]}', "duplicate_key"),
        (b'{"type":"block_actions","a":{"k":1,"k":2}}', "duplicate_key"),
    ],
    ids=["deep", "duplicate-top", "duplicate-nested"],
)
async def test_signed_hostile_json_is_a_400_with_an_audit_record(
    intake: Harness, source: str, body: bytes, error: str
) -> None:
    path, content, headers = signed(intake, source, body)
    r = await intake.client.post(path, content=content, headers=headers)
    assert r.status_code == 400, r.text
    answer = r.json()
    if source == "slack":
        assert answer["error"] == "invalid_payload" and error.replace("_", " ") in answer["message"]
    else:
        assert answer["error"] == error
    [record] = audit(intake)
    assert (record["source"], record["status"], record["outcome"]) == (source, 400, "rejected-input")
    assert record["verification"] == "ok"  # refused after the signature checked, before parsing
    metrics = (await intake.client.get("/metrics")).text
    assert f'waguard_intake_deliveries_total{{outcome="rejected-input",source="{source}"}} 1.0' in metrics
    await intake.settle()
    assert intake.starter.starts == [] and intake.runs.votes == [] and intake.runs.described == 0


async def test_depth_that_senders_use_still_parses(intake: Harness) -> None:
    """A limit that refused real payloads would be worse than none: 20 levels pass the depth check
    (and then fail the payload's shape, a 422, like any other unexpected body)."""
    path, content, headers = signed(intake, "alertmanager", deep_json(20).encode())
    r = await intake.client.post(path, content=content, headers=headers)
    assert (r.status_code, r.json()["error"]) == (422, "invalid_payload")


async def test_a_brace_inside_a_string_is_not_nesting(intake: Harness) -> None:
    """Alertmanager's groupKey is `{}:{alertname=...}`: brackets inside strings (also escaped quotes
    and backslashes) must not count, or a real delivery with odd label values would be refused."""
    tricky = '"' + '\\"{[' * 5000 + '\\\\' + '"'
    body = ('{"version":"4","groupKey":' + tricky + ',"alerts":[]}').encode()
    path, content, headers = signed(intake, "alertmanager", body)
    r = await intake.client.post(path, content=content, headers=headers)
    assert r.status_code == 422 and r.json()["error"] == "invalid_payload"  # parsed; wrong shape only


async def test_a_deep_slack_click_names_no_run(intake: Harness) -> None:
    run = uuid.uuid4()
    inner = '{"type":"block_actions","x":' + "[" * DEEP + "]" * DEEP + f',"run":"{run}"}}'
    path, content, headers = signed(intake, "slack", inner.encode())
    r = await intake.client.post(path, content=content, headers=headers)
    assert r.status_code == 400 and str(run) not in r.text
