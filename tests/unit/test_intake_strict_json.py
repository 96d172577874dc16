"""The depth check agrees with the parsed structure's real depth on any JSON (brackets, quotes and
backslashes inside strings included), duplicate keys are refused at any level, and nothing the
check meets raises anything but BadJson."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waguard.intake.strict_json import BadJson, compact_encoder, exceeds_depth, loads

TRICKY_TEXT = st.text(alphabet='[]{}"\\:,ab\n\u00e9', max_size=12)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | TRICKY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TRICKY_TEXT, children, max_size=4),
    max_leaves=40,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=400, deadline=None)
@given(value=JSON_VALUES, limit=st.integers(0, 8), ascii_only=st.booleans())
def test_depth_check_matches_the_parsed_depth(value: Any, limit: int, ascii_only: bool) -> None:
    body = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert exceeds_depth(body, limit) == (depth(value) > limit)


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"[" * 10_000 + b"]" * 10_000, "too_deep"),
        (b'{"a":' * 5_000 + b"1" + b"}" * 5_000, "too_deep"),
        (b"[" * 100_000, "too_large"),  # unbalanced, still refused before the parser sees it
        (b"[" * 40 + b"]" * 40, "too_deep"),
        (b"[" + b"[]," * 60_000 + b"[]]", "too_large"),
        (b'{"a":1,"a":1}', "duplicate_key"),
        (b'[{"x":{"k":[],"k":[]}}]', "duplicate_key"),
        (b'{"a":1', "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b'"\\', "malformed_json"),
    ],
)
def test_refusals(body: bytes, reason: str) -> None:
    with pytest.raises(BadJson) as err:
        loads(body)
    assert err.value.reason == reason and body.decode(errors="replace")[:20] not in str(err.value)


def test_brackets_inside_strings_count_toward_neither_limit() -> None:
    assert loads(json.dumps(["[[[{{{" * 20_000, "]]]" * 20_000])) == ["[[[{{{" * 20_000, "]]]" * 20_000]


def test_accepts_what_senders_send() -> None:
    value = {"groupKey": '{}:{alertname="X"}', "s": 'a\\"[[[[', "n": [[[[[[[[[[1]]]]]]]]]]}
    assert loads(json.dumps(value)) == value
    assert loads(json.dumps(value).encode()) == value


@settings(max_examples=300, deadline=None)
@given(value=st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TRICKY_TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(TRICKY_TEXT, children, max_size=4),
    max_leaves=40), ensure_ascii=st.booleans(), allow_nan=st.booleans())
def test_compact_encoder_writes_what_the_stdlib_encoder_writes(value: Any, ensure_ascii: bool,
                                                               allow_nan: bool) -> None:
    """Audit lines and answers keep their exact bytes, refusals (NaN when not allowed) included."""
    stdlib = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan, separators=(",", ":")).encode
    ours = compact_encoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan)
    try:
        expected: str | type[Exception] = stdlib(value)
    except ValueError:
        expected = ValueError
    if expected is ValueError:
        with pytest.raises(ValueError):
            ours(value)
    else:
        assert ours(value) == expected
    with pytest.raises(TypeError):  # what neither can write is refused alike
        ours({"k": object()})
