"""`waguard evidence verify | export-key | prune` end to end, against a real OpenBao."""

from __future__ import annotations

import asyncio
import io
import secrets
import tarfile
from pathlib import Path

import pytest
from pydantic import SecretStr

from tests.fixtures.vault import OpenBao
from waguard.cli import main
from waguard.evidence import EvidenceSources, write_bundle
from waguard.playbook.policy import EvidencePolicy
from waguard.playbook.timeline import IncidentRecord
from waguard.settings import EvidenceSettings
from waguard.vault.client import VaultClient


@pytest.fixture
def env(openbao: OpenBao, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI's settings come from the environment, as at any entry point."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("WAGUARD_VAULT__ADDR", openbao.addr)
    monkeypatch.setenv("WAGUARD_VAULT__AUTH_METHOD", "token")
    monkeypatch.setenv("WAGUARD_VAULT__TOKEN_FILE", str(openbao.settings.token_file))
    monkeypatch.setenv("WAGUARD_EVIDENCE__DIR", str(tmp_path / "evidence"))
    return tmp_path / "evidence"


def bundle(openbao: OpenBao, prefix: str, root: Path, encrypt: bool = False) -> Path:
    """A bundle written outside any event loop (the CLI runs its own, as a real command does)."""
    return asyncio.run(_bundle(openbao, prefix, root, encrypt))


async def _bundle(openbao: OpenBao, prefix: str, root: Path, encrypt: bool) -> Path:
    async with VaultClient.from_settings(openbao.settings) as vault:
        return await _write(vault, prefix, root, encrypt)


async def _write(vault: VaultClient, prefix: str, root: Path, encrypt: bool) -> Path:
    await vault.write_secret(f"{prefix}/x", SecretStr(secrets.token_urlsafe(16)))
    incident = IncidentRecord(root / "incidents", "INC-CLI")
    incident.append("open", "started")
    sources = EvidenceSources(incident_id="INC-CLI", incident=incident, graph=None, waba_id="3000000001",
                              business_id="2000000001", policy=EvidencePolicy(), extra={"note": "cli"})
    settings = EvidenceSettings(dir=root / "evidence", encrypt=encrypt, redaction_key_path=f"{prefix}/rk",
                                secret_prefixes=[f"{prefix}/"])
    ref = await write_bundle(sources, "open", vault=vault, settings=settings, signing_key="waguard-evidence")
    return Path(ref.path)


def test_export_verify_tamper_prune(env: Path, openbao: OpenBao, vault_prefix: str, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle(openbao, vault_prefix, tmp_path)
    (env / "waguard-evidence.pub.pem").unlink()  # export-key must write it back
    assert main(["evidence", "export-key"]) == 0
    assert (env / "waguard-evidence.pub.pem").read_text().startswith("# waguard evidence signing key")

    assert main(["evidence", "verify", str(path)]) == 0
    assert "VERIFIED" in capsys.readouterr().out

    with tarfile.open(path, "r:gz") as tar:
        content = {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]
    content["extra.json"] = content["extra.json"].replace(b"cli", b"CLI")
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, data in content.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    assert main(["evidence", "verify", str(bad), "--public-key", str(env / "waguard-evidence.pub.pem")]) == 1
    assert "FAILED  member extra.json: sha256" in capsys.readouterr().out
    assert main(["evidence", "verify", str(path), "--sha256", "0" * 64]) == 1
    assert "expected" in capsys.readouterr().out

    assert main(["evidence", "prune", "--dry-run", "--older-than", "0"]) == 0 and path.exists()
    assert main(["evidence", "prune", "--older-than", "0"]) == 0
    assert not path.exists() and "1 deleted" in capsys.readouterr().out
    assert (env / "prune-log.jsonl").exists()


def test_verify_decrypt_asks_vault_for_the_data_key(env: Path, openbao: OpenBao, vault_prefix: str,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = bundle(openbao, vault_prefix, tmp_path, encrypt=True)
    assert main(["evidence", "verify", str(path)]) == 0
    assert "not opened" in capsys.readouterr().out
    assert main(["evidence", "verify", str(path), "--decrypt"]) == 0
    assert "inside: timeline chain" in capsys.readouterr().out


def test_a_missing_key_file_is_a_clear_error(env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evidence", "verify", str(tmp_path / "x.tar.gz")]) == 2
    assert "export-key" in capsys.readouterr().err
