"""Redaction: take secrets, phone numbers, emails and message bodies out of evidence. Pure.

Every source is redacted as it is read, before a byte reaches disk. Order matters, so `Redactor.text`
runs two passes:

1. Secrets. Every value Vault holds under the configured prefixes, in each form a log is likely to
   carry it: raw, JSON-escaped, URL-encoded, hex, and base64 (std and url-safe, at each of the three
   byte alignments, so a secret inside a larger base64 blob, e.g. `Basic user:secret`, is caught too).
   Each line of a multi-line secret (a PEM key) counts on its own. Runs first, so a later rule can never
   rewrite half a secret and leave the other half behind. Replaced by `[secret:<tag>]`, a keyed tag
   that tells a reader which secret leaked without revealing it.
2. Everything else, in one regex pass: emails (`a***@example.com`), phone numbers (a keyed hash,
   `[tel:<tag>]`, of the digits only, so `+1 555-010-0000`, `15550100000` and a `wa_id` hash alike),
   and message bodies (`"body": "..."` and `"caption"`, unless the policy keeps them).

Phone numbers in free text: anything starting with `+` and holding 8-15 digits (spaces, dashes, dots
and brackets allowed between them); a bare run of 11-15 digits; any number of 6 or more digits after
a phone-ish key (`from=`, `"wa_id":`, `Phone:` ...). A 15-digit Graph object id looks exactly like a
bare phone number, so ids known from the collected Meta state, and numbers after an id key
(`phone_number_id=`, `"id":`), are kept. Documented limits: a bare run glued to a letter or a dash
is kept (it is part of a hash or a uuid far more often than a phone number), and so is a national
number of 10 digits or fewer with no key before it (it cannot be told from an id or a timestamp).
In base64, the one or two characters at each edge of a secret's encoding also carry bits of the
bytes around it and are left in place: at most a few bits of the secret survive there.

Secret values shorter than `SECRET_MIN_LEN` characters are not redacted (replacing every "abc" in a
log destroys the log); `Redactor.too_short` counts them, and the manifest records the count.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, quote_plus

SECRET_MIN_LEN = 6
VARIANT_MIN_LEN = 6  # an encoded fragment shorter than this would match by accident
BODY_DROPPED = "[body dropped]"
_LETTERS = str.maketrans("0123456789abcdef", "ghijklmnopqrstuv")  # tags hold no digits: never re-hashed

PHONE_KEYS = frozenset({"from", "to", "wa_id", "phone", "phone_number", "display_phone_number", "msisdn",
                        "recipient_id", "recipient", "tel", "mobile", "contact_number"})
BODY_KEYS = frozenset({"body", "caption"})
# Inside a WhatsApp message object every string is content except these.
MESSAGE_META_KEYS = frozenset({"id", "from", "to", "wa_id", "timestamp", "type", "messaging_product",
                               "recipient_type", "status", "mime_type", "sha256", "code"})
_TIME_HINTS = ("time", "timestamp", "_at", "expires", "date", "ts")

_PHONE_KEYS_LOWER = frozenset(k.lower() for k in PHONE_KEYS)
_CTX_VALUE = r"""[ \t]{0,3}["']?(?!\d{4}-\d\d-\d\d)\+?\d(?:[ \-.()]{0,2}\d){5,19}(?!\d)"""
# One pass; the first branch that matches at the leftmost position wins. Every branch starts with a
# literal character, so the regex engine skips in C to the next ":", "=", "+", '"' or digit instead
# of trying each branch at every position (3x faster on a log). Look-behinds and the key before a
# ":"/"=" are checked in `_replace`, only where something matched.
_TEXT = re.compile(
    f":{_CTX_VALUE}|={_CTX_VALUE}"  # key: value / key=value, the key is read back in _replace
    r"|\+\d(?:[ \-.()]{0,2}\d){7,14}(?!\d)"  # +E.164, optionally formatted
    + r'|"(?:body|caption)"[ \t]{0,3}:[ \t]{0,3}"(?:[^"\\\n]|\\.)*"'  # a message body in JSON text
    + "".join(rf"|{d}\d{{10,14}}(?![0-9A-Za-z\-])" for d in "0123456789")  # bare E.164 (11-15 digits)
)
_CTX_SPLIT = re.compile(r"""^([:=][ \t]{0,3}["']?)(.*)$""", re.DOTALL)
_BODY_SPLIT = re.compile(r"""^("[a-z]+"[ \t]{0,3}:[ \t]{0,3})""")
_KEY_BEFORE = re.compile(r"""([A-Za-z0-9_]+)["']?[ \t]{0,3}$""")
_NOT_BEFORE_BARE = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-")
_EMAIL_DOMAIN = re.compile(
    r"@(?P<domain>[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}\.[A-Za-z]{2,24})\b"
)
_PERCENT = re.compile(r"%[0-9A-F]{2}")
_PHONE_SHAPE = re.compile(r"\+?[\d \-.()]{6,24}")
_EMAIL_LOCAL = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._%+-")


@dataclass
class Counts:
    """How many things one source lost to redaction (numbers only, never what)."""

    secrets: int = 0
    phones: int = 0
    emails: int = 0
    bodies: int = 0

    def as_dict(self) -> dict[str, int]:
        return {"secrets": self.secrets, "phones": self.phones, "emails": self.emails, "bodies": self.bodies}


def _tag(key: bytes, domain: bytes, value: bytes, n: int) -> str:
    return hmac.new(key, domain + b"\0" + value, hashlib.sha256).hexdigest()[:n].translate(_LETTERS)


def phone_token(key: bytes, number: str) -> str:
    """`[tel:<16 letters>]`: a keyed hash of the number's digits, equal for every way it is written."""
    digits = "".join(c for c in number if c.isdigit())
    return f"[tel:{_tag(key, b'tel', digits.encode(), 16)}]"


def mask_email(local: str, domain: str) -> str:
    """`a***@example.com`: the first character of the mailbox and the whole domain (forensically useful)."""
    return f"{local[:1]}***@{domain}"


def _b64_cores(data: bytes) -> set[str]:
    """The base64 characters that depend only on `data`, at each of the 3 byte offsets it may sit at."""
    cores: set[str] = set()
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + data).decode().rstrip("=")
        first = -(-8 * offset // 6)  # first char made only of data bits
        last = 8 * (offset + len(data)) // 6  # chars before this one are complete
        core = encoded[first:last]
        cores.update({core, core.replace("+", "-").replace("/", "_")})
    return cores


def secret_variants(secret: str) -> set[str]:
    """Every form of `secret` that redaction removes (pure; see the module docstring)."""
    raw = secret.encode()
    forms = {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1],
             quote(secret, safe=""), quote(secret), quote_plus(secret), raw.hex(), raw.hex().upper()}
    forms |= {_PERCENT.sub(lambda m: m.group(0).lower(), f) for f in forms if "%" in f}  # %2f and %2F
    forms |= _b64_cores(raw)
    forms |= {line.strip("\r") for line in secret.split("\n") if len(line.strip("\r")) >= 8}
    return {f for f in forms if len(f) >= VARIANT_MIN_LEN}


def trie_pattern(words: Iterable[str]) -> str:
    """A regex matching any of `words`, built as a trie so matching costs the same for 5 words or 500.

    Longer words win over their prefixes (each optional tail is greedy).
    """
    root: dict[str, Any] = {}
    for word in words:
        node = root
        for ch in word:
            node = node.setdefault(ch, {})
        node[""] = {}

    def build(node: dict[str, Any]) -> str:
        kids = sorted(k for k in node if k)
        if not kids:
            return ""
        alts = [re.escape(k) + build(node[k]) for k in kids]
        body = alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"
        return f"(?:{body})?" if "" in node else body

    return build(root)


@dataclass(eq=False)
class Redactor:
    """Redaction keyed for one bundle. Build once per bundle; `text` and `value` are pure given it.

    Args:
        key: HMAC key for phone and secret tags (from Vault, so tags match across bundles).
        secrets: every secret value to remove.
        known_ids: Graph object ids that must stay readable although they look like phone numbers.
        keep_bodies: keep WhatsApp message bodies (the policy's `keep_message_bodies`).
    """

    key: bytes = field(repr=False)
    secrets: Iterable[str] = field(default=(), repr=False)
    known_ids: frozenset[str] = frozenset()
    keep_bodies: bool = False
    too_short: int = field(init=False, default=0)

    def __post_init__(self) -> None:
        self._marks: dict[str, str] = {}
        for secret in dict.fromkeys(self.secrets):
            if len(secret) < SECRET_MIN_LEN:
                self.too_short += 1
                continue
            mark = f"[secret:{_tag(self.key, b'secret', secret.encode(), 12)}]"
            for form in secret_variants(secret):
                self._marks.setdefault(form, mark)
        self.secret_pattern = re.compile(trie_pattern(self._marks)) if self._marks else None
        self.longest = max((len(f) for f in self._marks), default=0)
        self._tels: dict[str, str] = {}  # numbers repeat through a log: HMAC each once
        self.secrets = ()  # the values live on only inside the compiled pattern and the mark table

    def __repr__(self) -> str:
        return f"Redactor(secret_forms={len(self._marks)}, known_ids={len(self.known_ids)})"

    def spans(self, text: str) -> list[tuple[int, int]]:
        """Every [start, end) a redaction pass over `text` could rewrite (for cutting long lines)."""
        found = [m.span() for m in self.secret_pattern.finditer(text)] if self.secret_pattern else []
        # A ":"/"=" match depends on the key before it, so the key is part of what must not be cut.
        for m in _TEXT.finditer(text):
            start = m.start()
            if m.group(0)[0] in ":=":
                key = _KEY_BEFORE.search(text, max(0, start - 80), start)
                start = key.start() if key else start
            found.append((start, m.end()))
        found += [(max(0, m.start() - 64), m.end()) for m in _EMAIL_DOMAIN.finditer(text)]
        return sorted(found)

    def with_known_ids(self, ids: Iterable[str]) -> Redactor:
        """A copy that also keeps `ids` readable (ids learnt from the Meta state)."""
        twin = object.__new__(Redactor)
        twin.__dict__.update(self.__dict__)
        twin.known_ids = self.known_ids | frozenset(ids)
        return twin

    def remove_secrets(self, text: str, counts: Counts) -> str:
        """Pass 1 alone: every form of every secret replaced by its mark."""
        if self.secret_pattern is None:
            return text

        def mark(m: re.Match[str]) -> str:
            counts.secrets += 1
            return self._marks[m.group(0)]

        return self.secret_pattern.sub(mark, text)

    def text(self, text: str, counts: Counts) -> str:
        """Redact free text (a log line, a block of lines, a string inside JSON)."""
        return self._after_secrets(self.remove_secrets(text, counts), counts)

    def _after_secrets(self, text: str, counts: Counts) -> str:
        if "@" in text:
            text = self._emails(text, counts)
        return self._numbers(text, counts)

    def _replace(self, m: re.Match[str], counts: Counts) -> str:
        text = m.group(0)
        first = text[0]
        if first in ":=":
            return self._context(m, counts)
        if first == '"':
            if self.keep_bodies:
                return text
            counts.bodies += 1
            return _BODY_SPLIT.match(text).group(1) + json.dumps(BODY_DROPPED)  # type: ignore[union-attr]
        before = m.string[m.start() - 1] if m.start() else ""
        if first == "+" and before.isdigit():  # "1+555...": not a phone, but what follows "+" may be
            return "+" + self._numbers(text[1:], counts)
        if first != "+" and (before in _NOT_BEFORE_BARE or text in self.known_ids):
            return text  # part of a longer token (a hash, a uuid) or a known Graph id
        counts.phones += 1
        return self._tel(text)

    def _tel(self, number: str) -> str:
        token = self._tels.get(number)
        if token is None:
            if len(self._tels) > 100_000:  # bounded: a log of all-different numbers must not grow it
                self._tels.clear()
            token = self._tels[number] = phone_token(self.key, number)
        return token

    def _context(self, m: re.Match[str], counts: Counts) -> str:
        """A number after ":" or "=": hashed after a phone key, kept after an id key, else the plain rules."""
        sep, value = _CTX_SPLIT.match(m.group(0)).groups()  # type: ignore[union-attr]
        key_m = _KEY_BEFORE.search(m.string, max(0, m.start() - 80), m.start())
        key = key_m.group(1).lower() if key_m else ""
        if key in _PHONE_KEYS_LOWER:
            counts.phones += 1
            return sep + self._tel(value)
        if key.endswith("id") and value.isdigit():
            return sep + value
        return sep + self._numbers(value, counts)

    def _numbers(self, text: str, counts: Counts) -> str:
        return _TEXT.sub(lambda inner: self._replace(inner, counts), text)

    def _emails(self, text: str, counts: Counts) -> str:
        # Anchored on "@" and walked back by hand: a regex starting at the mailbox would scan up to
        # 64 characters at every position of a 100 MB log.
        out: list[str] = []
        done = 0
        for m in _EMAIL_DOMAIN.finditer(text):
            start = m.start()
            while start > done and start > m.start() - 64 and text[start - 1] in _EMAIL_LOCAL:
                start -= 1
            if start == m.start():
                continue
            counts.emails += 1
            domain = self._numbers(m.group("domain"), counts)
            out += [text[done:start], mask_email(text[start:m.start()], domain)]
            done = m.end()
        out.append(text[done:])
        return "".join(out)

    # --- structured data ---------------------------------------------------------------------

    def value(self, data: Any, counts: Counts) -> Any:
        """Redact JSON-like data (dicts, lists, strings, numbers), using keys as context."""
        return self._walk(data, None, counts, in_message=False)

    def _walk(self, data: Any, key: str | None, counts: Counts, *, in_message: bool) -> Any:
        if isinstance(data, Mapping):
            message = in_message or is_message(data)
            return {self.text(str(k), counts): self._walk(v, str(k), counts, in_message=message)
                    for k, v in data.items()}
        if isinstance(data, list | tuple):
            # A list under "messages" (a webhook's value.messages) holds message objects.
            message = in_message or key == "messages"
            return [self._walk(v, key, counts, in_message=message) for v in data]
        if isinstance(data, str):
            return self._leaf(data, (key or "").lower(), counts, in_message)
        if isinstance(data, int) and not isinstance(data, bool):
            return self._number(data, (key or "").lower(), counts)
        return data

    def _leaf(self, value: str, key: str, counts: Counts, in_message: bool) -> str:
        if not self.keep_bodies and (key in BODY_KEYS or (in_message and key not in MESSAGE_META_KEYS)):
            counts.bodies += 1
            return BODY_DROPPED
        value = self.remove_secrets(value, counts)
        if key in PHONE_KEYS and _PHONE_SHAPE.fullmatch(value) and sum(c.isdigit() for c in value) >= 6:
            counts.phones += 1
            return self._tel(value)
        if _is_id_key(key) and value.isdigit():
            return value
        return self._after_secrets(value, counts)

    def _number(self, value: int, key: str, counts: Counts) -> int | str:
        digits = len(str(abs(value)))
        phoneish = key in PHONE_KEYS and digits >= 6
        if not phoneish and (_is_id_key(key) or any(h in key for h in _TIME_HINTS) or not 11 <= digits <= 15):
            return value
        if str(value) in self.known_ids and key not in PHONE_KEYS:
            return value
        counts.phones += 1
        return self._tel(str(value))


def _is_id_key(key: str) -> bool:
    return key == "id" or key.endswith(("_id", "_ids"))


def is_message(obj: Mapping[str, Any]) -> bool:
    """A WhatsApp message payload: an outbound send (`messaging_product` + `to`) or an inbound one."""
    if obj.get("messaging_product") == "whatsapp" and "type" in obj and ("to" in obj or "from" in obj):
        return True
    return "from" in obj and "type" in obj and "timestamp" in obj and "id" in obj


def known_ids(data: Any) -> set[str]:
    """Digit-only values under id keys anywhere in `data` (the Meta state): they stay readable."""
    found: set[str] = set()

    def walk(value: Any, key: str) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(v, str(k).lower())
        elif isinstance(value, list | tuple):
            for v in value:
                walk(v, key)
        elif _is_id_key(key) and key not in PHONE_KEYS and str(value).isdigit():
            found.add(str(value))

    walk(data, "")
    return found
