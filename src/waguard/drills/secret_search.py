"""Canary scan: is any secret value anywhere it must never be?

Prefect stores parameters, run inputs, logs and artifacts in plain text and redacts nothing, so the
only proof that waguard kept its promise is to look. Every value Vault holds (all versions, so
rotated-out secrets count too) is searched for raw and encoded (base64, URL, hex) in what Prefect
stored and in what the simulators recorded. Used by the flow tests and the drills.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from urllib.parse import quote, quote_plus
from uuid import UUID

from prefect.client.orchestration import PrefectClient
from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

PAGE = 200  # the Prefect API's largest page
MIN_SECRET_LEN = 8  # shorter values (a 6-digit PIN aside) would match by chance; PINs are checked raw


@dataclass(frozen=True)
class Hit:
    where: str      # e.g. "prefect:logs:<run id>", "slack:messages"
    encoding: str   # raw, base64, url, hex
    secret_ref: str  # which secret (its index and length), never the value

    def __str__(self) -> str:
        return f"{self.secret_ref} found {self.encoding}-encoded in {self.where}"


def encodings(value: str) -> Iterator[tuple[str, str]]:
    """The forms a secret may take in a leak (pure)."""
    raw = value.encode()
    yield "raw", value
    yield "base64", base64.b64encode(raw).decode().rstrip("=")
    yield "base64url", base64.urlsafe_b64encode(raw).decode().rstrip("=")
    yield "url", quote(value, safe="")
    yield "url+", quote_plus(value)
    yield "hex", binascii.hexlify(raw).decode()


def _short_digits_in(form: str, text: str) -> bool:
    """A short all-digit value (a PIN) standing on its own: not inside a longer number, a decimal, a
    timestamp, an id or a word, where six digits occur by chance in any database (pure)."""
    return re.search(rf"(?<![0-9A-Za-z._-]){re.escape(form)}(?![0-9A-Za-z._-])", text) is not None


def scan_text(where: str, text: str, secrets: Iterable[str]) -> list[Hit]:
    """Every secret found in `text`, by encoding (pure). Equal encodings are reported once."""
    hits = []
    for i, secret in enumerate(secrets):
        short_digits = len(secret) < MIN_SECRET_LEN and secret.isdigit()
        if len(secret) < MIN_SECRET_LEN and not short_digits:
            continue
        seen: set[str] = set()
        for name, form in encodings(secret):
            if form in seen:
                continue
            seen.add(form)
            found = _short_digits_in(form, text) if short_digits and form == secret else form and form in text
            if found:
                hits.append(Hit(where, name, f"secret#{i} ({len(secret)} chars)"))
    return hits


async def prefect_texts(client: PrefectClient) -> list[tuple[str, str]]:
    """What the Prefect server stored: every flow run's parameters, inputs and logs, and all artifacts."""
    out: list[tuple[str, str]] = []
    offset = 0
    while True:
        runs = await client.read_flow_runs(limit=PAGE, offset=offset)
        if not runs:
            break
        offset += len(runs)
        for run in runs:
            out.append((f"prefect:parameters:{run.id}", json.dumps(run.parameters, default=str)))
            out.append((f"prefect:state:{run.id}", json.dumps(
                run.state.model_dump(mode="json") if run.state else {}, default=str)))
            inputs = await client.filter_flow_run_input(run.id, "", 1000, set())
            out.append((f"prefect:inputs:{run.id}", json.dumps([i.value for i in inputs])))
            out.append((f"prefect:logs:{run.id}", "\n".join(await _log_lines(client, run.id))))
    artifacts: list[object] = []
    while True:
        page = await client.read_artifacts(limit=PAGE, offset=len(artifacts))
        artifacts += [a.data for a in page]
        if len(page) < PAGE:
            break
    out.append(("prefect:artifacts", json.dumps(artifacts, default=str)))
    return out


async def _log_lines(client: PrefectClient, run_id: UUID) -> list[str]:
    lines: list[str] = []
    while True:
        page = await client.read_logs(LogFilter(flow_run_id=LogFilterFlowRunId(any_=[run_id])),
                                      limit=PAGE, offset=len(lines))
        lines += [log.message for log in page]
        if len(page) < PAGE:
            return lines
