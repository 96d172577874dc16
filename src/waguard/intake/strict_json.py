"""Parse an authenticated body as JSON, refusing shapes no sender uses before they cost anything.

Python's json decoder recurses once per nesting level, so a signed body nested 10,000 deep ends in
a RecursionError (a 500 with no audit record). The depth is measured first, without recursion and
with C-speed bytes operations only: escapes removed, everything but quotes and brackets deleted
(`bytes.translate`), the strings' contents dropped, then the innermost `[]` pairs removed one level
per pass, giving up after `max_depth` passes. A typical body costs a few microseconds; a hostile
one at most `max_depth` linear passes over at most `MAX_CONTAINERS` pairs of brackets.

Duplicate keys are refused too: `{"action":"created","action":"resolved"}` means one thing to
Python (last wins) and possibly another to whatever the sender or an auditor reads.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from json import encoder as _stdlib_encoder
from typing import Any, Literal

MAX_DEPTH = 32  # the deepest payload we accept (Slack block_actions with rich text: about 10)
# Arrays and objects in one body. A Meta batch of 1,000 changes holds about 5,000; this bounds the
# cost of the depth passes and of parsing (3 MB of `[],` would be a million lists).
MAX_CONTAINERS = 50_000

_KEEP_QUOTES_AND_BRACKETS = bytes(b for b in range(256) if b not in b'"[]{}')
_SQUARE = bytes.maketrans(b"{}", b"[]")

Reason = Literal["too_deep", "too_large", "duplicate_key", "malformed_json"]


class BadJson(ValueError):
    """The body is not JSON the intake accepts; `reason` is a short code for answers and audits."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason: Reason = reason


def _brackets(body: bytes) -> bytes:
    """The body's brackets outside strings, `{}` written as `[]`."""
    # Escapes first, on the whole body: escaped backslashes, then escaped quotes (left to right, as
    # the parser pairs them); other escapes hold no quote or bracket.
    if b"\\\\" in body:
        body = body.replace(b"\\\\", b"")
    if b'\\"' in body:
        body = body.replace(b'\\"', b"")
    # Keep only quotes and brackets. Adjacent quotes are an empty string, or two strings with no
    # bracket between them: dropping them keeps every other quote's parity. Then drop what lies
    # between the remaining quote pairs (strings holding brackets, rare).
    reduced = body.translate(_SQUARE, _KEEP_QUOTES_AND_BRACKETS).replace(b'""', b"")
    return b"".join(reduced.split(b'"')[::2]) if b'"' in reduced else reduced


def _deeper_than(brackets: bytes, max_depth: int) -> bool:
    too_deep = b"[" * (max_depth + 1)
    # Each pass removes the innermost pairs, one level; a run of max_depth+1 openers is already too
    # deep (the usual attack ends on the first check, before any pass).
    for _ in range(max_depth):
        if too_deep in brackets:
            return True
        if b"[]" not in brackets:
            return False
        brackets = brackets.replace(b"[]", b"")
    return b"[]" in brackets


def exceeds_depth(body: bytes, max_depth: int = MAX_DEPTH) -> bool:
    """True when arrays/objects in `body` nest deeper than `max_depth` (brackets in strings ignored).

    Not a validator: unbalanced brackets or stray quotes are left for the parser to refuse.
    """
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return False  # most small bodies: not enough brackets to be that deep
    return _deeper_than(_brackets(body), max_depth)


def check_shape(body: bytes, max_depth: int = MAX_DEPTH, max_containers: int = MAX_CONTAINERS) -> None:
    """Refuse a body nested deeper than `max_depth` or holding more than `max_containers` arrays and
    objects, before any parser sees it.

    Raises:
        BadJson: "too_deep" or "too_large".
    """
    upper_bound = body.count(b"[") + body.count(b"{")  # brackets in strings counted too
    if upper_bound <= max_depth:
        return
    brackets = _brackets(body)
    if upper_bound > max_containers and brackets.count(b"[") > max_containers:
        raise BadJson("too_large", f"the JSON holds more than {max_containers} arrays and objects")
    if _deeper_than(brackets, max_depth):
        raise BadJson("too_deep", f"the JSON nests too deep (more than {max_depth} levels)")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise BadJson("duplicate_key", "the JSON has a duplicate key in one object")
    return obj


_DECODER = json.JSONDecoder(object_pairs_hook=_no_duplicates)


def loads(body: bytes | str, max_depth: int = MAX_DEPTH) -> Any:
    """Parse `body` (UTF-8 JSON) after the depth check, refusing duplicate keys.

    Raises:
        BadJson: too deep or too many containers, a duplicate key, or not JSON; the message never
            quotes the body.
    """
    raw = body.encode() if isinstance(body, str) else body
    check_shape(raw, max_depth)
    try:  # what json.loads(raw, object_pairs_hook=...) does, without a new decoder per call
        return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))
    except BadJson:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise BadJson("malformed_json", "the body is not valid JSON") from None


def compact_encoder(*, ensure_ascii: bool, allow_nan: bool) -> Callable[[Any], str]:
    """`json.JSONEncoder(separators=(",", ":"), ...).encode` with its C encoder built once: the
    stdlib builds one per call (about a microsecond, twice per delivery: audit line and answer).
    Same text; cycles are not looked for (records and answers are trees)."""
    plain = json.JSONEncoder(ensure_ascii=ensure_ascii, allow_nan=allow_nan, separators=(",", ":"))
    make = getattr(_stdlib_encoder, "c_make_encoder", None)  # not in typeshed
    if make is None:  # no C accelerator in this Python
        return plain.encode
    one_shot = make(None, plain.default, _stdlib_encoder.encode_basestring_ascii if ensure_ascii
                    else _stdlib_encoder.encode_basestring, None, ":", ",", False, False, allow_nan)
    join = "".join

    def encode(value: Any) -> str:
        return join(one_shot(value, 0))

    return encode
