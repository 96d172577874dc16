"""Forensic evidence bundles: collect, redact, hash-chain, sign with Vault transit, verify offline.

    redact.py     pure redaction: secrets (and their encodings), phone numbers, emails, message bodies
    stream.py     bounded-memory streaming of a source through redaction into a staged member
    collect.py    the sources: Meta state, timeline, intake audit, Prefect logs, Slack, log files
    manifest.py   manifest, signature record, re-chaining, public-key files (pure)
    crypto.py     AES-256-GCM over files for encrypted bundles
    bundle.py     write_bundle: collect, sign, pack, encrypt, store
    verify.py     verify_bundle: offline, names the first failed check
    retention.py  prune bundles past their window, with a hash-chained deletion log
    commands.py   `waguard evidence verify | export-key | prune`
"""

from waguard.evidence.bundle import export_public_keys, key_file_path, write_bundle
from waguard.evidence.collect import EvidenceSources
from waguard.evidence.manifest import BundleRef, Manifest, Phase
from waguard.evidence.retention import PruneReport, prune
from waguard.evidence.verify import EvidenceInvalid, VerifyReport, verify_bundle

__all__ = [
    "BundleRef",
    "EvidenceInvalid",
    "EvidenceSources",
    "Manifest",
    "Phase",
    "PruneReport",
    "VerifyReport",
    "export_public_keys",
    "key_file_path",
    "prune",
    "verify_bundle",
    "write_bundle",
]
