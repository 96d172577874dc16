"""The canary scan finds a secret in every encoding it claims to, and nothing else."""

import base64
import binascii
from urllib.parse import quote

import pytest

from waguard.drills.secret_search import scan_text

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


@pytest.mark.parametrize("text", ['{"pin": "123456"}', "PIN 123456 set", "pin=123456&x", "pin:123456", "123456"])
def test_a_pin_on_its_own_is_found(text: str) -> None:
    assert [h.encoding for h in scan_text("here", text, ["123456"])] == ["raw"]


@pytest.mark.parametrize("text", ["2026-11-24 21:56:22.123456", "id 9123456", "size 1234567",
                                  "f47ac10b-58cc-4372-a567-123456abcdef", "v123456"])
def test_six_digits_inside_timestamps_ids_and_numbers_are_chance_not_leaks(text: str) -> None:
    assert scan_text("here", text, ["123456"]) == []
