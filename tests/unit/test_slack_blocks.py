"""Block Kit builders and the button-value parser: pure, table-driven."""

from __future__ import annotations

import json
import typing
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from waguard.playbook import timeline as incident
from waguard.slack import blocks as bk
from waguard.slack import limits

RUN = UUID("3f1e2d4c-5b6a-4789-8abc-def012345678")
NONCE = "Zm9vYmFyYmF6cXV4"
PREFECT = "http://127.0.0.1:4200/runs/flow-run/3f1e2d4c-5b6a-4789-8abc-def012345678"
DIGEST = "a" * 64


def view(**overrides: object) -> bk.IncidentView:
    fields: dict[str, object] = {
        "incident_id": "inc-2026-0042", "playbook": "leaked_secret", "title": "App secret found in CI logs",
        "severity": "SEV1", "state": "awaiting approval", "current_step": "rotate-app-secret",
        "prefect_run_url": PREFECT,
    }
    return bk.IncidentView(**{**fields, **overrides})


def request(**overrides: object) -> bk.ApprovalRequest:
    fields: dict[str, object] = {
        "run_id": RUN, "step": "deregister-numbers", "nonce": NONCE,
        "summary": "Deregister *2* phone numbers of WABA `3000000001`.",
        "destructive": ("deregister +1 555 0100", "deregister +1 555 0101"),
    }
    return bk.ApprovalRequest(**{**fields, **overrides})


def texts(blocks: list[bk.Block]) -> list[str]:
    """Every text string in the blocks, wherever it sits."""
    out: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("text"), str):
                out.append(node["text"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(blocks)
    return out


def buttons(blocks: list[bk.Block]) -> list[dict[str, typing.Any]]:
    return [el for b in blocks if b["type"] == "actions" for el in b["elements"]]


# ---- incident message -----------------------------------------------------------------------------

def test_incident_blocks_golden() -> None:
    v = view(steps=(bk.StepLine(step="snapshot-evidence", outcome="done"),
                    bk.StepLine(step="post-status", outcome="done", detail="thread opened")),
             evidence_url="http://127.0.0.1:8730/evidence/inc-2026-0042", evidence_digest="sha256:" + DIGEST)
    assert bk.incident_blocks(v) == [
        {"type": "header", "text": {"type": "plain_text", "text": "SEV1 · App secret found in CI logs",
                                    "emoji": True}},
        {"type": "section", "fields": [
            {"type": "mrkdwn", "text": "*Incident*\n`inc-2026-0042`"},
            {"type": "mrkdwn", "text": "*Playbook*\n`leaked_secret`"},
            {"type": "mrkdwn", "text": "*Severity*\n:red_circle: SEV1"},
            {"type": "mrkdwn", "text": "*State*\n:hourglass_flowing_sand: awaiting approval"},
            {"type": "mrkdwn", "text": "*Current step*\n`rotate-app-secret`"},
        ]},
        {"type": "section", "text": {"type": "mrkdwn", "text":
            "*Steps*\n:white_check_mark: `snapshot-evidence`"
            "\n:white_check_mark: `post-status` thread opened"}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text":
            f"<{PREFECT}|Prefect flow run> · <http://127.0.0.1:8730/evidence/inc-2026-0042|Evidence bundle>"
            f" · sha256 `{DIGEST}`"}]},
    ]
    assert limits.problems(bk.incident_blocks(v)) == []


@pytest.mark.parametrize(
    ("overrides", "block", "expected"),
    [
        ({"state": "contained"}, 1, ":shield: contained"),
        ({"state": "resolved"}, 1, ":white_check_mark: resolved"),
        ({"state": "failed"}, 1, ":x: failed"),
        ({"state": "approved"}, 1, ":white_check_mark: approved"),
        ({"state": "proceeded"}, 1, ":fast_forward: proceeded"),
        ({"state": "something new"}, 1, ":large_blue_circle: something new"),
        ({"severity": "SEV2"}, 1, ":large_orange_circle: SEV2"),
        ({"severity": "SEV3"}, 1, ":large_yellow_circle: SEV3"),
        ({"current_step": None}, 1, "*Current step*\n—"),
        ({"steps": ()}, 2, "_No steps yet._"),
        ({"steps": (bk.StepLine(step="revoke", outcome="failed", detail="<!channel> & co"),)}, 2,
         ":x: `revoke` &lt;!channel&gt; &amp; co"),
        ({"evidence_digest": DIGEST}, 3, f"sha256 `{DIGEST}`"),
    ],
)
def test_incident_blocks_show(overrides: dict[str, object], block: int, expected: str) -> None:
    blocks = bk.incident_blocks(view(**overrides))
    assert any(expected in t for t in texts([blocks[block]])), texts([blocks[block]])


@pytest.mark.parametrize("outcome", typing.get_args(incident.Outcome))
def test_every_timeline_outcome_has_an_emoji(outcome: str) -> None:
    assert outcome in bk.OUTCOME_EMOJI


def test_title_is_escaped_in_fallback_and_plain_in_header() -> None:
    v = view(title="Phishing <!channel> template <https://evil.example|bank>")
    assert "<!channel>" not in bk.incident_text(v)
    assert "&lt;!channel&gt;" in bk.incident_text(v)
    header = bk.incident_blocks(v)[0]["text"]
    assert header["type"] == "plain_text"  # plain_text is not parsed for mentions or links


def test_backtick_cannot_break_out_of_a_code_span() -> None:
    fields = bk.incident_blocks(view(playbook="a`*b*`c"))[1]["fields"]
    assert fields[1]["text"].count("`") == 2


def test_long_title_is_cut_to_the_header_limit() -> None:
    header = bk.incident_blocks(view(title="x" * 500))[0]["text"]["text"]
    assert len(header) == limits.HEADER_TEXT
    assert header.endswith(bk.ELLIPSIS)


def test_many_steps_keep_the_latest_and_fit_a_section() -> None:
    steps = tuple(bk.StepLine(step=f"step-{i:03d}", outcome="done", detail="d" * 200) for i in range(100))
    blocks = bk.incident_blocks(view(steps=steps))
    text = blocks[2]["text"]["text"]
    assert len(text) <= limits.SECTION_TEXT
    assert "`step-099`" in text and "`step-000`" not in text
    assert "earlier steps" in text
    assert limits.problems(blocks) == []


def test_oversized_free_text_is_cut_not_refused() -> None:
    # An attacker-sized alert title or step detail must not fail the playbook run that reports it.
    huge = "x" * 50_000
    v = view(title=huge, state=huge, current_step=huge,
             steps=(bk.StepLine(step=huge, outcome="info", detail=huge),))
    blocks = bk.incident_blocks(v)
    assert limits.problems(blocks) == []
    assert len(bk.incident_text(v)) <= bk.FALLBACK_TEXT


def test_run_id_may_be_given_as_a_string() -> None:
    assert request(run_id=str(RUN)).run_id == RUN


@pytest.mark.parametrize(
    "overrides",
    [
        {"prefect_run_url": "javascript:alert(1)"},
        {"prefect_run_url": "http://x/|label"},
        {"evidence_url": "http://x/ y"},
        {"evidence_digest": "abc"},
        {"severity": "SEV9"},
        {"title": ""},
        {"unknown": 1},
    ],
)
def test_incident_view_rejects(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        view(**overrides)


# ---- approval request ------------------------------------------------------------------------------

def test_approval_blocks_shape() -> None:
    blocks = bk.approval_blocks(request())
    assert limits.problems(blocks) == []
    actions = [b for b in blocks if b["type"] == "actions"]
    assert len(actions) == 1
    assert actions[0]["block_id"] == f"approval-v1:deregister-numbers:{NONCE}"
    approve, deny = actions[0]["elements"]
    assert (approve["action_id"], approve["style"], approve["text"]["text"]) == (
        "approve", "primary", "Approve")
    assert (deny["action_id"], deny["style"], deny["text"]["text"]) == ("deny", "danger", "Deny")
    assert "confirm" not in approve
    assert deny["confirm"]["title"]["text"] == "Deny this step?"
    assert deny["confirm"]["confirm"]["text"] == "Deny" and deny["confirm"]["deny"]["text"] == "Cancel"
    assert approve["value"] == deny["value"] == (
        '{"run":"3f1e2d4c-5b6a-4789-8abc-def012345678",'
        '"step":"deregister-numbers","nonce":"Zm9vYmFyYmF6cXV4"}')


def test_button_value_parses_back() -> None:
    for button in buttons(bk.approval_blocks(request())):
        assert bk.parse_button_value(button["value"]) == bk.ButtonValue(run=RUN, step="deregister-numbers",
                                                                       nonce=NONCE)


def test_block_id_changes_with_the_nonce() -> None:
    a = bk.approval_blocks(request())[-1]["block_id"]
    b = bk.approval_blocks(request(nonce="another-nonce-123"))[-1]["block_id"]
    assert a != b


def test_summary_is_cut_and_destructive_lines_are_escaped() -> None:
    blocks = bk.approval_blocks(request(summary="s" * 5000, destructive=("delete <!here> & more",)))
    assert len(blocks[0]["text"]["text"]) == limits.SECTION_TEXT
    assert blocks[0]["text"]["text"].endswith(bk.ELLIPSIS)
    assert "• delete &lt;!here&gt; &amp; more" in blocks[1]["text"]["text"]
    assert limits.problems(blocks) == []


def test_no_destructive_list_means_no_list_section() -> None:
    blocks = bk.approval_blocks(request(destructive=()))
    assert not any("Approving will" in t for t in texts(blocks))


@pytest.mark.parametrize(
    "overrides",
    [{"step": "has space"}, {"step": "x" * 101}, {"step": "-lead"}, {"nonce": "short"}, {"nonce": "a/b" * 4},
     {"run_id": "not-a-uuid"}, {"summary": ""}],
)
def test_approval_request_rejects(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        request(**overrides)


# ---- decided ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("decision", "by", "line"),
    [
        ("approved", "U012ONCALL", ":white_check_mark: *Approved* by <@U012ONCALL>"),
        ("denied", "W034SECLEAD", ":no_entry: *Denied* by <@W034SECLEAD>"),
        ("held", "timeout-policy:SEV3", ":pause_button: *No decision in time: held* (`timeout-policy:SEV3`)"),
        ("proceeded", "timeout-policy:SEV1",
         ":fast_forward: *No decision in time: proceeded* (`timeout-policy:SEV1`)"),
        ("approved", "<!channel>", ":white_check_mark: *Approved* by `&lt;!channel&gt;`"),
        ("approved", "", ":white_check_mark: *Approved* by _unknown_"),
    ],
)
def test_decided_replaces_buttons(decision: bk.Decided, by: str, line: str) -> None:
    blocks = bk.decided_blocks(request(), decision, by)
    assert buttons(blocks) == []
    assert blocks[-1]["text"]["text"] == line
    assert blocks[-1]["block_id"] == f"decided-v1:deregister-numbers:{NONCE}"
    assert blocks[:-1] == bk.approval_blocks(request())[:-1]  # what was decided stays on record
    assert limits.problems(blocks) == []
    assert "<!channel>" not in bk.decided_text(request(), decision, by)


def test_decided_rejects_an_unknown_decision() -> None:
    with pytest.raises(ValueError, match="unknown decision"):
        bk.decided_blocks(request(), "maybe", "U1")  # type: ignore[arg-type]


def test_decided_matches_the_approval_gate_outcomes() -> None:
    from waguard.playbook.approval import Decision
    from waguard.playbook.policy import Decided

    assert bk.Decided is Decided and typing.get_type_hints(Decision)["outcome"] is Decided
    assert set(typing.get_args(Decided)) == set(bk.DECIDED_LINE)


# ---- parse_button_value ----------------------------------------------------------------------------

GOOD = {"run": str(RUN), "step": "deregister-numbers", "nonce": NONCE}


def enc(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"))


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (None, "must be a string"),
        (b'{"run":1}', "must be a string"),
        (GOOD, "must be a string"),
        ("x" * 2001, "longer than 2000"),
        (enc({**GOOD, "pad": "p" * 2000}), "longer than 2000"),
        ("", "not JSON"),
        ("{run:1}", "not JSON"),
        (enc([GOOD]), "JSON object"),
        (enc("str"), "JSON object"),
        (enc({"run": str(RUN), "step": "s"}), "lacks field.*nonce"),
        (enc({}), "lacks field.*nonce, run, step"),
        (enc({**GOOD, "extra": 1}), "unexpected field.*extra"),
        ('{"run":"%s","run":"%s","step":"s","nonce":"%s"}' % (RUN, RUN, NONCE), "repeats"),
        (enc({**GOOD, "run": 1}), "'run' must be a string"),
        (enc({**GOOD, "nonce": None}), "'nonce' must be a string"),
        (enc({**GOOD, "run": "not-a-uuid"}), "'run' is not a UUID"),
        (enc({**GOOD, "run": str(RUN).upper()}), "canonical"),
        (enc({**GOOD, "run": "{" + str(RUN) + "}"}), "canonical"),
        (enc({**GOOD, "run": RUN.hex}), "canonical"),
        (enc({**GOOD, "step": "a b"}), "'step'"),
        (enc({**GOOD, "step": "step\n"}), "'step'"),
        (enc({**GOOD, "step": ""}), "'step'"),
        (enc({**GOOD, "nonce": "short"}), "'nonce'"),
        (enc({**GOOD, "nonce": NONCE + "\n"}), "'nonce'"),
        (enc({**GOOD, "nonce": "a/b+c=d" * 2}), "'nonce'"),
    ],
)
def test_parse_button_value_rejects(value: object, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        bk.parse_button_value(value)
    assert len(str(info.value)) < 200  # names the problem, never echoes the input


def test_parse_button_value_accepts_any_key_order() -> None:
    assert bk.parse_button_value(enc({"nonce": NONCE, "step": "deregister-numbers", "run": str(RUN)})) == \
        bk.ButtonValue(run=RUN, step="deregister-numbers", nonce=NONCE)


steps = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._:-]{0,99}\Z")
nonces = st.from_regex(r"\A[A-Za-z0-9_-]{8,128}\Z")


@given(run=st.uuids(), step=steps, nonce=nonces)
def test_button_value_round_trips(run: UUID, step: str, nonce: str) -> None:
    req = bk.ApprovalRequest(run_id=run, step=step, nonce=nonce, summary="s")
    value = bk.button_value(req)
    assert len(value) <= limits.BUTTON_VALUE
    assert bk.parse_button_value(value) == bk.ButtonValue(run=run, step=step, nonce=nonce)
    assert limits.problems(bk.approval_blocks(req)) == []
    assert limits.problems(bk.decided_blocks(req, "approved", "U1X")) == []


# ---- text helpers ----------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch…"),
        ("ab &amp; cd", 6, "ab …"),
        ("ab &amp; cd", 8, "ab …"),
        ("ab &amp; cd", 9, "ab &amp;…"),
        ("see <https://x.example/long|link> now", 20, "see …"),
        ("<@U1> ok", 5, "…"),
        ("", 3, ""),
    ],
)
def test_truncate(text: str, limit: int, expected: str) -> None:
    assert bk.truncate(text, limit) == expected
    assert len(bk.truncate(text, limit)) <= limit


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a & b", "a &amp; b"), ("<!channel>", "&lt;!channel&gt;"), ("&lt;", "&amp;lt;"), ("plain", "plain")],
)
def test_escape_mrkdwn(text: str, expected: str) -> None:
    assert bk.escape_mrkdwn(text) == expected


# ---- the limit checker itself ----------------------------------------------------------------------

def button(**kw: object) -> dict[str, object]:
    return {"type": "button", "action_id": "a", "text": {"type": "plain_text", "text": "ok"}, **kw}


@pytest.mark.parametrize(
    ("blocks", "pointer"),
    [
        ("nope", "/blocks"),
        ([{"type": "divider"}] * 51, "/blocks"),
        ([{"type": "bogus"}], "/blocks/0/type"),
        ([{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}], "/blocks/0/text/text"),
        ([{"type": "header", "text": {"type": "mrkdwn", "text": "h"}}], "/blocks/0/text"),
        ([{"type": "section", "text": {"type": "mrkdwn", "text": "s" * 3001}}], "/blocks/0/text/text"),
        ([{"type": "section"}], "/blocks/0"),
        ([{"type": "section", "fields": [{"type": "mrkdwn", "text": "f"}] * 11}], "/blocks/0/fields"),
        ([{"type": "divider", "block_id": "x"}, {"type": "divider", "block_id": "x"}], "/blocks/1/block_id"),
        ([{"type": "divider", "block_id": "b" * 256}], "/blocks/0/block_id"),
        ([{"type": "actions", "elements": []}], "/blocks/0/elements"),
        ([{"type": "actions", "elements": [button(text={"type": "plain_text", "text": "t" * 76})]}],
         "/blocks/0/elements/0/text/text"),
        ([{"type": "actions", "elements": [button(action_id="a" * 256)]}], "/blocks/0/elements/0/action_id"),
        ([{"type": "actions", "elements": [button(), button()]}], "/blocks/0/elements/1/action_id"),
        ([{"type": "actions", "elements": [button(value="v" * 2001)]}], "/blocks/0/elements/0/value"),
        ([{"type": "actions", "elements": [button(style="green")]}], "/blocks/0/elements/0/style"),
        ([{"type": "actions", "elements": [button(confirm={"title": {"type": "plain_text", "text": "t"}})]}],
         "/blocks/0/elements/0/confirm/text"),
        ([{"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}] * 11}], "/blocks/0/elements"),
    ],
)
def test_limits_problems_point_at_the_fault(blocks: object, pointer: str) -> None:
    found = limits.problems(blocks)
    assert any(f"[json-pointer:{pointer}]" in p for p in found), found
