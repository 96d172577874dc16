"""Redaction, pure: table-driven cases, and properties over generated log lines: no planted secret (raw,
base64, URL-encoded, hex, JSON-escaped) and no planted phone number survives, in whole text or streamed in
pieces of any size."""

from __future__ import annotations

import base64
import json
import re
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from waguard.evidence.redact import (
    BODY_DROPPED,
    Counts,
    Redactor,
    known_ids,
    phone_token,
    secret_variants,
    trie_pattern,
)
from waguard.evidence.stream import redact_stream, safe_cut

KEY = b"k" * 32
SECRET = "s3cr3t-Value/with+chars=="


def red(text: str, *secrets: str, ids: frozenset[str] = frozenset(), keep: bool = False) -> str:
    return Redactor(key=KEY, secrets=secrets, known_ids=ids, keep_bodies=keep).text(text, Counts())


TEL = phone_token(KEY, "15550100001")


@pytest.mark.parametrize("text, expected", [
    ("call +15550100001 now", f"call {TEL} now"),
    ("call +1 555-010-0001 now", f"call {TEL} now"),
    ("call +1 (555) 010-0001.", f"call {TEL}."),
    ("wa_id=15550100001", f"wa_id={TEL}"),
    ('"from": "15550100001"', f'"from": "{TEL}"'),
    ("to: 5550100001", f"to: {phone_token(KEY, '5550100001')}"),  # 10 digits after a phone key
    ("bare 15550100001 in text", f"bare {TEL} in text"),
    ("phone_number_id=106853218861309", "phone_number_id=106853218861309"),  # id key: kept
    ('"id":"106853218861309"', '"id":"106853218861309"'),
    ("path /v23.0/106853218861309/x", "path /v23.0/106853218861309/x"),  # known id (see ids below)
    ("sha abcdef15550100001 ok", "sha abcdef15550100001 ok"),  # part of a longer token
    ("uuid 0f0e-155501000012", "uuid 0f0e-155501000012"),
    ("ts 1714557600 and 2025-05-01", "ts 1714557600 and 2025-05-01"),  # timestamps and dates stay
    ("from=2025-05-01 to=2025-05-02", "from=2025-05-01 to=2025-05-02"),
    ("mail alice.smith+x@acme.example ok", "mail a***@acme.example ok"),
    ("jid 15550100001@s.whatsapp.net", "jid 1***@s.whatsapp.net"),
    ('{"text":{"body":"hello \\"you\\""},"x":1}', '{"text":{"body":"[body dropped]"},"x":1}'),
    ('"caption": "a photo"', '"caption": "[body dropped]"'),
    ("no numbers here", "no numbers here"),
])
def test_text_rules(text: str, expected: str) -> None:
    assert red(text, ids=frozenset({"106853218861309"})) == expected


@pytest.mark.parametrize("form", [
    SECRET, quote(SECRET, safe=""), quote_plus(SECRET), 
    re.sub("%[0-9A-F]{2}", lambda m: m.group(0).lower(), quote(SECRET, safe="")), SECRET.encode().hex(),
    SECRET.encode().hex().upper(), json.dumps(SECRET)[1:-1],
    base64.b64encode(SECRET.encode()).decode(), base64.urlsafe_b64encode(SECRET.encode()).decode(),
    base64.b64encode(b"user:" + SECRET.encode()).decode(),  # inside a larger base64 blob (Basic auth)
    base64.b64encode(b"xy" + SECRET.encode() + b"tail").decode(),
])
def test_every_encoding_of_a_secret_is_removed(form: str) -> None:
    out = red(f"before {form} after", SECRET)
    assert "[secret:" in out
    assert SECRET not in out and SECRET.encode().hex() not in out
    core = base64.b64encode(SECRET.encode()).decode()[2:-4]
    assert core not in out


def test_pem_secret_lines_are_removed_one_by_one() -> None:
    pem = "-----BEGIN KEY-----\nMIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8\nAgEAAkEAq7BFUpkGp3+XQmrZ\n-----END KEY-----"
    out = red("dump: MIIBVgIBADANBgkqhkiG9w0BAQEFAASCAUAwggE8 and AgEAAkEAq7BFUpkGp3+XQmrZ", pem)
    assert "MIIBVg" not in out and "AgEAAk" not in out


def test_short_secrets_are_counted_not_redacted() -> None:
    r = Redactor(key=KEY, secrets=["abc", "longenough"])
    assert r.too_short == 1 and r.text("abc longenough", Counts()).startswith("abc [secret:")


def test_secret_runs_before_email_and_phone_rules() -> None:
    secret = "tok15550100001zz"
    out = red(f"user@{secret}.example.com +{secret}", secret)
    assert secret not in out and "15550100001" not in out


def test_phone_hash_is_the_same_however_the_number_is_written_and_keyed() -> None:
    assert phone_token(KEY, "+1 555 010 0001") == phone_token(KEY, "15550100001") == TEL
    assert phone_token(b"other" * 8, "15550100001") != TEL
    assert not re.search(r"\d", TEL)  # a tag has no digits, so it is never re-hashed


def test_structured_values_use_keys_as_context() -> None:
    webhook = {"entry": [{"changes": [{"value": {
        "metadata": {"display_phone_number": "15550100001", "phone_number_id": "106853218861309"},
        "contacts": [{"wa_id": "15550109999", "profile": {"name": "Bob"}}],
        "messages": [{"from": "15550109999", "id": "wamid.X", "timestamp": "1714557600", "type": "text",
                      "text": {"body": "hi"}, "image": {"caption": "pic", "mime_type": "image/jpeg"}}]}}]}]}
    counts = Counts()
    out = Redactor(key=KEY).value(webhook, counts)
    value = out["entry"][0]["changes"][0]["value"]
    message = value["messages"][0]
    assert value["metadata"] == {"display_phone_number": TEL, "phone_number_id": "106853218861309"}
    assert value["contacts"][0]["wa_id"] == phone_token(KEY, "15550109999")
    assert message["text"]["body"] == BODY_DROPPED and message["image"]["caption"] == BODY_DROPPED
    assert message["image"]["mime_type"] == "image/jpeg" and message["timestamp"] == "1714557600"
    assert counts.bodies == 2 and counts.phones == 3


def test_outbound_message_bodies_are_dropped_unless_kept() -> None:
    send = {"messaging_product": "whatsapp", "to": "+15550100001", "type": "template",
            "template": {"name": "promo", "components": [{"parameters": [{"type": "text", "text": "Bob"}]}]}}
    dropped = Redactor(key=KEY).value(send, Counts())
    assert dropped["template"]["components"][0]["parameters"][0]["text"] == BODY_DROPPED
    assert dropped["to"] == TEL
    kept = Redactor(key=KEY, keep_bodies=True).value(send, Counts())
    assert kept["template"]["components"][0]["parameters"][0]["text"] == "Bob"


@pytest.mark.parametrize("data, expected", [
    ({"expires_at": 1714557600123, "user_id": 155501000011234}, {"expires_at": 1714557600123,
                                                                 "user_id": 155501000011234}),
    ({"phone": 15550100001}, {"phone": TEL}),
    ({"count": 15550100001}, {"count": TEL}),
    ({"ok": True, "n": 3}, {"ok": True, "n": 3}),
])
def test_numbers(data: dict, expected: dict) -> None:
    assert Redactor(key=KEY).value(data, Counts()) == expected


def test_known_ids_come_from_id_keys_only() -> None:
    state = {"phone_numbers": [{"id": "106853218861309", "display_phone_number": "15550100001"}],
             "x": {"wa_id": "15550109999", "business_id": "2000000001"}}
    assert known_ids(state) == {"106853218861309", "2000000001"}


def test_trie_pattern_prefers_the_longest_word() -> None:
    pattern = re.compile(trie_pattern(["abc", "abcdef", "abx", "z.+"]))
    assert pattern.findall("abcdefg abcq abx z.+ z..") == ["abcdef", "abc", "abx", "z.+"]


def test_redactor_repr_holds_no_secret() -> None:
    r = Redactor(key=KEY, secrets=[SECRET])
    assert SECRET not in repr(r) and "k" * 32 not in repr(r)


def test_variants_are_long_enough_to_not_match_by_accident() -> None:
    assert all(len(v) >= 6 for v in secret_variants("abcdef"))


# --- properties -----------------------------------------------------------------------------------

secret_st = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=8, max_size=48)
# Filler never holds digits, "+" or "@", so any number or email in the output was planted.
filler_st = st.text(alphabet="abcdefghij klmnop=:/,;\"'{}[]_-.\t", max_size=30)
ENCODINGS = {
    "raw": lambda s: s,
    "base64": lambda s: base64.b64encode(s.encode()).decode(),
    "base64-in-blob": lambda s: base64.b64encode(b"Basic:" + s.encode()).decode(),
    "urlsafe-b64": lambda s: base64.urlsafe_b64encode(s.encode()).decode().rstrip("="),
    "url": lambda s: quote(s, safe=""),
    "url-plus": quote_plus,
    "hex": lambda s: s.encode().hex(),
    "HEX": lambda s: s.encode().hex().upper(),
    "json": lambda s: json.dumps(s)[1:-1],
}


@st.composite
def phone_st(draw: st.DrawFn) -> tuple[str, str]:
    """(how it is written, its digits): E.164 with and without '+', formatted, or after a key."""
    country = draw(st.sampled_from(["1", "44", "49", "55", "91", "234"]))
    rest = draw(st.text(alphabet="0123456789", min_size=11 - len(country), max_size=15 - len(country)))
    number = country + rest
    shape = draw(st.sampled_from(["plus", "spaced", "dashed", "bare", "wa_id", "json-from"]))
    written = {
        "plus": "+" + number,
        "spaced": "+" + country + " " + " ".join(rest[i:i + 3] for i in range(0, len(rest), 3)),
        "dashed": "+" + country + "-" + rest[:3] + "-" + rest[3:],
        "bare": number,
        "wa_id": "wa_id=" + number,
        "json-from": '"from":"' + number + '"',
    }[shape]
    return written, number


def secret_gone(out: str, secret: str) -> bool:
    core = base64.b64encode(secret.encode()).decode()[2:-4]  # what survives of any base64 alignment
    return all(f not in out for f in (secret, secret.encode().hex(), secret.encode().hex().upper(),
                                      quote(secret, safe=""), json.dumps(secret)[1:-1])) and core not in out


@settings(max_examples=400, deadline=None)
@given(secret=secret_st, encoding=st.sampled_from(sorted(ENCODINGS)), phone=phone_st(),
       before=filler_st, middle=filler_st, after=filler_st)
def test_no_planted_secret_or_phone_survives(secret: str, encoding: str, phone: tuple[str, str],
                                             before: str, middle: str, after: str) -> None:
    written, number = phone
    line = f"{before}{ENCODINGS[encoding](secret)}{middle} {written} {after}\n"  # secrets need no spaces
    out = red(line, secret)
    assert secret_gone(out, secret)
    assert number not in out and written not in out


@settings(max_examples=150, deadline=None)
@given(secret=secret_st, phone=phone_st(), filler=st.lists(filler_st, min_size=1, max_size=6),
       chunk=st.integers(1, 97), newlines=st.booleans())
def test_streaming_in_any_chunk_size_lets_nothing_through(secret: str, phone: tuple[str, str],
                                                          filler: list[str], chunk: int, newlines: bool) -> None:
    """Pieces of any size, and (without newlines) one long line cut by safe_cut, still redact fully."""
    written, number = phone
    sep = "\n" if newlines else " "
    text = sep.join(f"{f} {secret} {written} {base64.b64encode(secret.encode()).decode()} " * 150 for f in filler)
    data = text.encode()
    r = Redactor(key=KEY, secrets=[secret])
    out = "".join(redact_stream((data[i:i + chunk] for i in range(0, len(data), chunk)), r, Counts(), limit=1))
    assert out.count("[secret:") >= 2 * 150 * len(filler)  # every planted copy replaced
    assert secret_gone(out, secret) and number not in out


@given(st.text(alphabet="ab 0123456789+@.-:=", min_size=0, max_size=200))
def test_safe_cut_never_splits_a_match_and_always_progresses(text: str) -> None:
    r = Redactor(key=KEY, secrets=["ab ab ab", "0000000"])
    buf = text * 60
    cut, withhold = safe_cut(buf, r)
    assert 0 < cut <= len(buf) or not buf
    if not withhold:
        for start, end in r.spans(buf):
            assert not start < cut < end


def test_back_to_back_matches_are_withheld_whole_rather_than_cut() -> None:
    secret = "1555010000"
    r = Redactor(key=KEY, secrets=[secret])
    data = ("=+" + secret + "1") * 4000  # every character inside overlapping secret and phone matches
    out = "".join(redact_stream([data.encode()], r, Counts(), limit=1))
    assert secret not in out and "15550100001" not in out and "[withheld:" in out
