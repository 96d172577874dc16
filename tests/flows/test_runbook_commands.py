"""The runbooks' manual commands work as written.

Every ```bash block in runbooks/*.md is tagged `setup`, `read-only` or `writes` and parses. The
read-only ones run, after the set-up block of runbooks/by-hand.md, in bash against the local stack
(tests/fixtures/stack.py): real OpenBao through `bao`, the Meta simulator through `curl`. They must
succeed and change nothing: the simulator records only GETs, Vault's versions stay as they were.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS = sorted((ROOT / "runbooks").glob("*.md"))
FENCE = re.compile(r"^```bash(?P<tags>[^\n]*)\n(?P<body>.*?)^```", re.S | re.M)
VENV_BIN = Path(sys.executable).parent


def blocks(path: Path) -> list[tuple[str, str]]:
    return [(m["tags"].strip(), m["body"]) for m in FENCE.finditer(path.read_text())]


def setup_block() -> str:
    [body] = [b for tags, b in blocks(ROOT / "runbooks" / "by-hand.md") if tags == "setup"]
    return body


READ_ONLY = [pytest.param(path, i, body, id=f"{path.stem}-{i}")
             for path in RUNBOOKS for i, (tags, body) in enumerate(blocks(path)) if tags == "read-only"]


def test_every_command_block_is_tagged_and_parses() -> None:
    found = 0
    for path in RUNBOOKS:
        text = path.read_text()
        assert "```sh" not in text and "```shell" not in text, f"{path.name}: fence commands as ```bash <tag>"
        for tags, body in blocks(path):
            found += 1
            assert tags in ("setup", "read-only", "writes"), f"{path.name}: untagged block {body[:60]!r}"
            parsed = subprocess.run(["bash", "-n", "-c", setup_block() + "\n" + body],
                                    capture_output=True, text=True)
            assert parsed.returncode == 0, f"{path.name}: {parsed.stderr}"
    assert found >= 10 and READ_ONLY


def test_no_runbook_assumes_an_unset_up_shell() -> None:
    """`bao` and `graph` only appear in runbooks that send the reader to the set-up first."""
    for path in RUNBOOKS:
        text = path.read_text()
        if path.name != "by-hand.md" and re.search(r"\bbao |\bgraph (GET|POST|DELETE)", text):
            assert "(by-hand.md)" in text, f"{path.name} uses bao/graph without linking the shell set-up"


async def _versions(vault, paths: list[str]) -> list[int]:  # type: ignore[no-untyped-def]
    out = []
    for path in paths:
        meta = await vault.read_metadata(path)
        out.append(meta.current_version)
    return out


@pytest.mark.parametrize(("path", "index", "body"), READ_ONLY)
async def test_read_only_commands_run_against_the_local_stack(  # type: ignore[no-untyped-def]
        local_stack, path: Path, index: int, body: str) -> None:
    from waguard.vault.client import VaultClient

    settings = local_stack.settings
    env = {**os.environ,
           "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",
           "BAO_ADDR": settings.vault.addr,
           "BAO_TOKEN": settings.vault.token_file.read_text().strip(),  # the operator's token (the dev root)
           "GRAPH": f"{local_stack.meta}/{settings.meta.graph_version}",
           "APP_ID": settings.meta.app_id, "BUSINESS_ID": settings.meta.business_id,
           "WABA_ID": settings.meta.waba_id, "LEDGER": str(settings.meta.ledger_path)}
    watched = [settings.meta.app_secret_path, settings.meta.token_path, "meta/messaging-token"]
    async with VaultClient.from_settings(settings.vault) as vault:
        before = await _versions(vault, watched)
        seen = len(local_stack.meta_requests())
        ran = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", setup_block() + "\n" + body], cwd=ROOT,
                             env=env, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 0, \
            f"{path.name} block {index} failed:\n{body}\n{ran.stdout[-2000:]}\n{ran.stderr[-2000:]}"
        assert ran.stdout.strip()
        made = local_stack.meta_requests()[seen:]
        assert {r["method"] for r in made} <= {"GET"}, made
        assert await _versions(vault, watched) == before
