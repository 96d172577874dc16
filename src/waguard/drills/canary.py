"""The drill's canary scan: every secret Vault holds, searched for everywhere it must never be.

Places: what the Prefect API serves (parameters, states, run inputs, logs, artifacts) and, byte for
byte, the whole Prefect home (its SQLite database and WAL included), the intake's state dir (audit log,
replay database), the incident timelines, the stack's logs, the Meta registration ledger, with
`state.dsn` set every table of the shared-state database (`waguard.drills.canary_db`), every member
of every evidence bundle (an encrypted payload is scanned as the ciphertext it is) and every other file
in the evidence tree, and the simulators' records (Meta requests, state and token list; Slack messages
and requests). Endpoints that exist to hand out a secret (the Meta simulator's PIN read, reset-secret,
token issue) are not stores and are not scanned. Only raw and encoded values count (see
`waguard.drills.secret_search.encodings`); hashes and masked forms are not hits.

Files are read in chunks that overlap by the longest encoded secret, so memory stays bounded and a value
across a chunk boundary is still found. Bytes are decoded latin-1, so every byte sequence is searchable
(a non-ASCII secret's raw form is then missed; Vault's values here are ASCII tokens). Nothing here
logs, raises or returns a secret value: a Hit names a secret by its index and length, and a place whose
own name holds a secret is renamed.
"""

from __future__ import annotations

import asyncio
import tarfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import IO, Any

import httpx

from waguard.drills.secret_search import Hit, encodings, prefect_texts, scan_text
from waguard.settings import Settings
from waguard.vault.client import VaultClient

CHUNK = 4 * 1024 * 1024    # bytes read from a file at a time
OVERLAP = 64 * 1024        # default overlap; scan_everywhere uses the longest encoded secret instead
BUNDLE_SUFFIX = ".tar.gz"


@dataclass
class CanaryReport:
    hits: list[Hit]     # distinct (place, encoding, secret) triples
    places: int         # distinct places scanned (a file read in chunks is one place)
    secrets: int        # distinct values searched for
    bytes_scanned: int  # characters scanned, chunk overlaps included

    @property
    def clean(self) -> bool:
        return not self.hits

    def __str__(self) -> str:
        head = f"canary scan: {self.secrets} secrets, {self.places} places, {self.bytes_scanned} bytes"
        return "\n".join([f"{head}: {len(self.hits)} hits", *(f"  {h}" for h in self.hits)])


async def vault_secret_values(vault: VaultClient, prefixes: Iterable[str]) -> list[str]:
    """Every distinct value stored in Vault KV under `prefixes`, every key of every readable version."""
    wanted = [p if not p or p.endswith("/") else p + "/" for p in prefixes]
    return [s.get_secret_value() for s in await vault.read_all_secret_values(wanted)]


def max_form_len(secrets: Iterable[str]) -> int:
    """The longest form any secret takes in `encodings` (the chunk overlap that finds them all)."""
    return max((len(form) for s in secrets for _, form in encodings(s)), default=1)


def _chunks(f: IO[bytes], where: str, chunk: int, overlap: int) -> Iterator[tuple[str, str]]:
    tail, read_any = b"", False
    while block := f.read(chunk):
        read_any = True
        buf = tail + block
        yield where, buf.decode("latin-1")
        tail = buf[max(0, len(buf) - overlap):] if overlap > 0 else b""
    if not read_any:
        yield where, ""  # an empty file is still a place that was looked at


def file_texts(path: Path, label: str, *, chunk: int = CHUNK,
               overlap: int = OVERLAP) -> Iterator[tuple[str, str]]:
    """The raw bytes of one file as latin-1 text, in overlapping chunks, each labelled `label`.

    Raises:
        FileNotFoundError: no such file.
    """
    with path.open("rb") as f:
        yield from _chunks(f, label, chunk, overlap)


def tree_texts(root: Path, label: str, *, chunk: int = CHUNK,
               overlap: int = OVERLAP) -> Iterator[tuple[str, str]]:
    """Every file under `root` (nothing when it is absent), labelled `label:<relative path>`."""
    for path in sorted(p for p in root.rglob("*") if p.is_file()) if root.is_dir() else []:
        try:
            yield from file_texts(path, f"{label}:{path.relative_to(root)}", chunk=chunk, overlap=overlap)
        except FileNotFoundError:
            continue  # gone since the listing (an SQLite journal, a staging file)


def bundle_texts(evidence_dir: Path, *, chunk: int = CHUNK,
                 overlap: int = OVERLAP) -> Iterator[tuple[str, str]]:
    """Every file in the evidence tree: each bundle member's content as
    `evidence:<bundle>:<member>`, other files (public keys, staging leftovers) as `evidence:<file>`.
    A bundle that is not a readable tar.gz is scanned as raw bytes too."""
    for path in sorted(p for p in evidence_dir.rglob("*") if p.is_file()) if evidence_dir.is_dir() else []:
        rel = path.relative_to(evidence_dir)
        if path.name.endswith(BUNDLE_SUFFIX):
            try:
                with tarfile.open(path, "r:gz") as tar:
                    for member in tar:
                        f = tar.extractfile(member) if member.isfile() else None
                        if f is not None:
                            yield from _chunks(f, f"evidence:{rel}:{member.name}", chunk, overlap)
                continue
            except (tarfile.TarError, EOFError, OSError):
                pass  # not a bundle after all: fall through to its raw bytes
        try:
            yield from file_texts(path, f"evidence:{rel}", chunk=chunk, overlap=overlap)
        except FileNotFoundError:
            continue


def _leaves(data: Any) -> Iterator[str]:
    # JSON-decoded strings: a secret with a quote or backslash is escaped in the raw body.
    if isinstance(data, dict):
        for k, v in data.items():
            yield str(k)
            yield from _leaves(v)
    elif isinstance(data, list):
        for v in data:
            yield from _leaves(v)
    elif isinstance(data, str):
        yield data


def http_texts(meta_url: str, slack_url: str, *, timeout_s: float = 30.0) -> list[tuple[str, str]]:
    """The simulators' stores: Meta's request record, state and token list (secrets masked there, which is
    the claim checked), Slack's messages and request record.

    Raises:
        httpx.HTTPError: a simulator did not answer (a scan that cannot look proves nothing).
    """
    meta, slack = meta_url.rstrip("/"), slack_url.rstrip("/")
    places = [("meta:requests", f"{meta}/_sim/requests"), ("meta:state", f"{meta}/_sim/state"),
              ("meta:tokens", f"{meta}/_sim/tokens"), ("slack:messages", f"{slack}/_sim/messages"),
              ("slack:requests", f"{slack}/_sim/requests")]
    out = []
    with httpx.Client(timeout=timeout_s) as http:
        for where, url in places:
            response = http.get(url)
            response.raise_for_status()
            out.append((where, "\n".join([response.text, *_leaves(response.json())])))
    return out


def scan_texts(texts: Iterable[tuple[str, str]], secrets: Sequence[str]) -> CanaryReport:
    """Scan `(where, text)` pairs (chunks of one place share its `where`) for `secrets` (distinct)."""
    hits: dict[Hit, None] = {}
    places: set[str] = set()
    renamed: dict[str, str] = {}
    size = 0
    for where, text in texts:
        if where in renamed or (named := scan_text("place name", where, secrets)):
            if where not in renamed:
                renamed[where] = f"place#{len(renamed)} (its name holds a secret)"
                hits.update(dict.fromkeys(Hit(renamed[where] + ":name", h.encoding, h.secret_ref)
                                          for h in named))
            where = renamed[where]
        places.add(where)
        size += len(text)
        hits.update(dict.fromkeys(scan_text(where, text, secrets)))
    return CanaryReport(hits=list(hits), places=len(places), secrets=len(secrets), bytes_scanned=size)


def local_texts(settings: Settings, prefect_home: Path, *, chunk: int = CHUNK,
                overlap: int = OVERLAP) -> Iterator[tuple[str, str]]:
    """Every file-backed place of the stack (see the module docstring).

    Raises:
        FileNotFoundError: `prefect_home` holds no prefect.db (a scan that misses it proves nothing).
    """
    if not (prefect_home / "prefect.db").is_file():
        raise FileNotFoundError(f"no Prefect database at {prefect_home / 'prefect.db'}")
    kw = {"chunk": chunk, "overlap": overlap}
    yield from tree_texts(prefect_home, "prefect-home", **kw)
    yield from tree_texts(settings.intake.state_dir, "intake", **kw)
    yield from tree_texts(settings.incidents_dir, "incidents", **kw)
    yield from tree_texts(settings.stack.home / "logs", "logs", **kw)
    if settings.meta.ledger_path.is_file():
        yield from file_texts(settings.meta.ledger_path, "meta:ledger", **kw)
    yield from bundle_texts(settings.evidence.dir, **kw)
    if settings.state.dsn:  # claims, nonces, audit, timelines and ledger of every replica and run
        from waguard.drills.canary_db import database_texts

        yield from database_texts(settings.state.dsn, chunk=chunk)


async def scan_everywhere(settings: Settings, secrets: Sequence[str], *, meta_url: str, slack_url: str,
                          prefect_home: Path) -> CanaryReport:
    """Search every secret in every place: the Prefect API (at settings.prefect.api_url), the stack's
    files and bundles, and the simulators. Files and HTTP are read in a worker thread."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    values = list(dict.fromkeys(secrets))
    with temporary_settings(updates={PREFECT_API_URL: settings.prefect.api_url}):
        async with get_client() as client:
            prefect = await prefect_texts(client)

    def scan() -> CanaryReport:
        overlap = max_form_len(values)
        return scan_texts(chain(prefect, local_texts(settings, prefect_home, overlap=overlap),
                                http_texts(meta_url, slack_url)), values)

    return await asyncio.to_thread(scan)
