"""The canary scan finds a secret in every encoding it claims to, and nothing else."""

import base64
import binascii
from urllib.parse import quote

import pytest

from waguard.canary import scan_text

SECRET = "s3cr3t/value+with=chars"


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        (f"log line {SECRET} end", "raw"),
        (base64.b64encode(SECRET.encode()).decode(), "base64"),
        (quote(SECRET, safe=""), "url"),
        (binascii.hexlify(SECRET.encode()).decode(), "hex"),
    ],
)
def test_each_encoding_is_found(text: str, encoding: str) -> None:
    hits = scan_text("here", text, [SECRET])
    assert encoding in {h.encoding for h in hits}
    assert all(SECRET not in str(h) for h in hits)  # a hit names the secret by index, not value


def test_clean_text_has_no_hits() -> None:
    assert scan_text("here", "nothing to see; secret#0 (23 chars)", [SECRET]) == []


def test_short_values_are_ignored_but_pins_are_not() -> None:
    assert scan_text("here", "abc", ["abc"]) == []
    assert len(scan_text("here", "pin 123456 set", ["123456"])) == 1
