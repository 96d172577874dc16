"""`waguard evidence verify | export-key | prune`: thin argparse glue over the evidence package.

`verify` needs no Vault (unless `--decrypt` is asked for); `export-key` reads the public keys from
Vault; `prune` works on the evidence directory alone.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
from pathlib import Path
from typing import TYPE_CHECKING

from waguard.errors import ConfigError
from waguard.evidence.bundle import export_public_keys, key_file_path
from waguard.evidence.retention import prune
from waguard.evidence.verify import verify_bundle
from waguard.settings import Settings

if TYPE_CHECKING:
    from waguard.vault.client import VaultClient


def _vault(settings: Settings) -> VaultClient:
    from waguard.vault.client import VaultClient  # only the commands that need Vault pay for hvac

    return VaultClient.from_settings(settings.vault)


def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    """Verify a bundle offline; exit 0 when it verifies, 1 naming the first failure."""
    key_path = Path(args.public_key) if args.public_key else key_file_path(settings.evidence,
                                                                           settings.vault.evidence_key)
    try:
        key = key_path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read public key file {key_path}: {err.strerror} "
                          "(write it with `waguard evidence export-key`)") from None
    decrypt = None
    if args.decrypt:
        def decrypt(wrapped: str) -> bytes:
            async def unwrap() -> bytes:
                async with _vault(settings) as vault:
                    plain = await vault.decrypt_data_key(settings.evidence.encryption_key, wrapped)
                    return base64.b64decode(plain.get_secret_value())
            return asyncio.run(unwrap())

    report = verify_bundle(Path(args.bundle), key, decrypt=decrypt, expected_sha256=args.sha256)
    for check in report.checks:
        print(f"  ok    {check}")
    if report.inner is not None:
        for check in report.inner.checks:
            print(f"  ok    inside: {check}")
    if report.ok:
        print(f"VERIFIED {args.bundle} (manifest sha256 {report.manifest_sha256})")
        return 0
    print(f"FAILED  {report.failure}")
    return 1


def cmd_export_key(settings: Settings, args: argparse.Namespace) -> int:
    """Write every version of the signing key's public key (needs Vault)."""
    out = Path(args.out) if args.out else key_file_path(settings.evidence, settings.vault.evidence_key)

    async def export() -> Path:
        async with _vault(settings) as vault:
            await vault.check()
            return await export_public_keys(vault, settings.vault.evidence_key, out)

    print(f"wrote the public keys of {settings.vault.evidence_key} to {asyncio.run(export())}")
    return 0


def cmd_prune(settings: Settings, args: argparse.Namespace) -> int:
    """Delete bundles past their window; print and log what went."""
    report = prune(settings.evidence.dir, older_than_days=args.older_than, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for record in report.deleted:
        print(f"{verb} {record['path']} (created {record['created_at']}, window {record['window_days']} d)")
    for problem in report.unreadable:
        print(f"kept (unreadable) {problem}")
    print(f"{len(report.deleted)} {verb}, {report.kept} kept"
          + ("" if args.dry_run else f"; deletions logged in {settings.evidence.dir / 'prune-log.jsonl'}"))
    return 0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `evidence verify | export-key | prune` to the `waguard` command."""
    evidence = sub.add_parser("evidence", help="verify, export the signing key, prune evidence bundles")
    cmds = evidence.add_subparsers(dest="evidence_command", required=True)
    verify = cmds.add_parser("verify", help="check a bundle offline: hashes, timeline chain, signature")
    verify.add_argument("bundle")
    verify.add_argument("--public-key", help="key file from export-key (default: in the evidence directory)")
    verify.add_argument("--sha256", help="the bundle's published digest (Slack summary, Prefect artifact)")
    verify.add_argument("--decrypt", action="store_true",
                        help="also open an encrypted bundle (asks Vault to unwrap its data key)")
    verify.set_defaults(func=cmd_verify)
    export = cmds.add_parser("export-key", help="write the evidence signing public keys (all versions)")
    export.add_argument("--out", help="file to write (default: in the evidence directory)")
    export.set_defaults(func=cmd_export_key)
    prune_ = cmds.add_parser("prune", help="delete bundles past their retention window, logging each")
    prune_.add_argument("--older-than", type=int, metavar="DAYS",
                        help="override each bundle's policy window (retention_days) for this run")
    prune_.add_argument("--dry-run", action="store_true")
    prune_.set_defaults(func=cmd_prune)
