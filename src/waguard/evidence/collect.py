"""Collection: every source of an incident's evidence, redacted as it is read, into staged members.

A source that cannot be read (Meta down, a log glob that matches nothing, no Prefect API) does not
stop the bundle: evidence before containment matters more than complete evidence, so the failure is
recorded in the manifest's `errors` (type and a secret-free message) and collection goes on.
"""

from __future__ import annotations

import asyncio
import base64
import glob
import json
import os
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from uuid import UUID

from pydantic import SecretStr

from waguard.evidence.manifest import TIMELINE, TimelineInfo, chain_head, rechain
from waguard.evidence.redact import Counts, Redactor
from waguard.evidence.stream import Staging, read_chunks, redact_stream
from waguard.intake.audit import AuditReader
from waguard.meta.client import GraphClient
from waguard.playbook.policy import EvidencePolicy
from waguard.playbook.timeline import IncidentTimeline
from waguard.settings import EvidenceSettings
from waguard.vault.client import VaultClient
from waguard.vault.errors import VaultCasConflict, VaultSecretNotFound

LOG_PAGE = 200
# The intake answers (and audits) the first alert before the run's first timeline record, by seconds
# or, when Prefect was down and the start was retried, by hours: how far before that record the audit
# is read. Older records belong to other incidents.
AUDIT_LEAD_S = 86_400.0


def audit_since(incident: IncidentTimeline) -> float | None:
    """Where the incident's audit window starts: its first timeline record less AUDIT_LEAD_S (None: no
    timeline yet, so the whole audit log is read)."""
    events = incident.events()
    if not events:
        return None
    first = datetime.fromisoformat(events[0].at.replace("Z", "+00:00"))
    return first.timestamp() - AUDIT_LEAD_S


@dataclass
class EvidenceSources:
    """Everything one bundle collects. Holds clients and paths, never secret values."""

    incident_id: str
    incident: IncidentTimeline  # timeline
    graph: GraphClient | None  # None: Meta state skipped
    waba_id: str
    business_id: str
    policy: EvidencePolicy  # log_globs, keep_message_bodies, retention_days
    intake_audit: AuditReader | None = None  # the intake's audit log (files, or the shared table)
    flow_run_ids: Sequence[UUID] = ()  # Prefect runs whose logs to include
    slack_messages: Sequence[dict[str, Any]] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)  # small JSON-able facts (e.g. the alert)


async def redaction_key(vault: VaultClient, path: str) -> bytes:
    """The HMAC key for phone and secret tags, created in Vault on first use (so tags match across
    bundles and only Vault can link a tag back to a number)."""
    try:
        value = (await vault.read_secret(path)).value
    except VaultSecretNotFound:
        try:
            await vault.write_secret(
                path, SecretStr(base64.b64encode(secrets.token_bytes(32)).decode()), cas=0
            )
        except VaultCasConflict:
            pass  # another run created it first: use theirs
        value = (await vault.read_secret(path)).value
    return value.get_secret_value().encode()


async def load_redactor(vault: VaultClient, settings: EvidenceSettings, policy: EvidencePolicy) -> Redactor:
    """A Redactor with every secret value under `settings.secret_prefixes` (all readable versions)."""
    key = await redaction_key(vault, settings.redaction_key_path)
    values = await vault.read_all_secret_values(settings.secret_prefixes)
    return Redactor(key=key, secrets=[v.get_secret_value() for v in values],
                    keep_bodies=policy.keep_message_bodies)


def _error(source: str, err: BaseException) -> str:
    # waguard's errors never carry secret values; a foreign one might, so only its type is kept.
    from waguard.errors import WaguardError

    detail = str(err)[:300] if isinstance(err, WaguardError) else ""
    return f"{source}: {type(err).__name__}" + (f": {detail}" if detail else "")


def _json_member(staging: Staging, name: str, source: str, data: Any, redactor: Redactor) -> None:
    with staging.member(name, source) as out:
        out.write(json.dumps(redactor.value(data, out.counts), indent=1, sort_keys=True, ensure_ascii=False))


async def fetch_meta_state(graph: GraphClient, waba_id: str, business_id: str,
                           errors: list[str]) -> dict[str, Any]:
    """The Meta state that matters for an incident, unredacted, in memory (it is small)."""
    calls: dict[str, Callable[[], Awaitable[list[Any]]]] = {
        "phone_numbers": lambda: graph.list_phone_numbers(waba_id),
        "templates": lambda: graph.list_templates(waba_id),
        "business_users": lambda: graph.list_business_users(business_id),
        "system_users": lambda: graph.list_system_users(business_id),
        "assigned_users": lambda: graph.list_assigned_users(waba_id, business_id),
        "subscribed_apps": lambda: graph.list_subscribed_apps(waba_id),
    }
    state: dict[str, Any] = {}
    unreadable: dict[str, dict[str, str]] = {}

    async def read(name: str, call: Callable[[], Awaitable[list[Any]]]) -> None:
        try:
            state[name] = [item.model_dump(mode="json", exclude_none=True) for item in await call()]
        except Exception as err:  # noqa: BLE001 - a missing source is recorded, not fatal
            # Graph failing past the client's retry budget (a 429/5xx burst, an outage) must not cost
            # the bundle: the edge is recorded as unreadable, so nobody takes its absence for "empty".
            errors.append(_error(f"meta:{name}", err))
            unreadable[name] = {"error": type(err).__name__, "detail": _error(f"meta:{name}", err)}

    # Six independent reads, concurrently: one round trip of Graph latency instead of six.
    await asyncio.gather(*(read(name, call) for name, call in calls.items()))
    out = {name: state[name] for name in calls if name in state}
    if unreadable:
        out["unreadable"] = {name: unreadable[name] for name in calls if name in unreadable}
    return out


def collect_meta(staging: Staging, state: Mapping[str, Any], redactor: Redactor) -> None:
    """One member per Meta edge, `meta/<edge>.json`, redacted; `meta/unreadable.json` names the edges
    Graph would not give (edge -> error type and message)."""
    for name, data in state.items():
        _json_member(staging, f"meta/{name}.json", f"meta:{name}", data, redactor)


def collect_timeline(staging: Staging, incident: IncidentTimeline, redactor: Redactor) -> TimelineInfo:
    """The incident timeline, redacted record by record. Records hold no secrets by construction; if
    redaction still changed one (a phone number as a target, say), the chain is rebuilt and the
    manifest says which records and what the incident's own head was."""
    source = incident.raw()
    counts = Counts()
    redacted = [redactor.value(record, counts) for record in source]
    changed = [
        int(r.get("seq", i)) for i, (r, red) in enumerate(zip(source, redacted, strict=True)) if r != red
    ]
    if changed:
        redacted = rechain(redacted)
    with staging.member(TIMELINE, f"incident:{incident.incident_id}") as out:
        out.counts = counts
        for record in redacted:
            out.write(json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False) + "\n")
    return TimelineInfo(records=len(redacted), head=chain_head(redacted), source_head=chain_head(source),
                        rechained=bool(changed), redacted_seqs=changed)


def collect_audit(staging: Staging, audit: AuditReader | None, incident_id: str, run_ids: Sequence[UUID],
                  redactor: Redactor, errors: list[str], since: float | None = None) -> None:
    """The intake's audit entries for this incident (by `incident_key` or `run_id`), line by line, from
    `since` (Unix seconds; None: the whole log, rotated files included) onwards."""
    if audit is None:
        return
    if (missing := audit.missing()) is not None:
        errors.append(f"intake:audit: {missing}")
        return
    runs = {str(r) for r in run_ids}
    with staging.member("intake/audit.jsonl", f"intake:{audit.source}") as out:
        skipped = 0
        for line in audit.read_window(since):
            try:
                entry = json.loads(line)
            except ValueError:
                skipped += 1
                continue
            if not isinstance(entry, dict):
                skipped += 1
            elif entry.get("incident_key") == incident_id or str(entry.get("run_id")) in runs:
                out.write(
                    json.dumps(redactor.value(entry, out.counts), sort_keys=True, ensure_ascii=False) + "\n"
                )
        out.note = f"{skipped} malformed line(s) skipped" if skipped else ""


async def collect_flow_logs(staging: Staging, run_ids: Sequence[UUID], redactor: Redactor,
                            errors: list[str]) -> None:
    """The Prefect logs of the incident's runs, page by page, oldest first."""
    if not run_ids:
        return
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.client.schemas.sorting import LogSort
    from prefect.logging.handlers import APILogHandler

    try:
        await APILogHandler.aflush()  # our own run's latest lines are still in the batch queue
    except Exception:  # noqa: BLE001 - outside a run there is nothing to flush
        pass
    flt = LogFilter(flow_run_id=LogFilterFlowRunId(any_=list(run_ids)))
    try:
        async with get_client() as client:
            with staging.member(
                "prefect/flow-run-logs.jsonl", "prefect:" + ",".join(map(str, run_ids))
            ) as out:
                offset = 0
                while True:
                    page = await client.read_logs(log_filter=flt, limit=LOG_PAGE, offset=offset,
                                                  sort=LogSort.TIMESTAMP_ASC)
                    for log in page:
                        record = {
                            "timestamp": log.timestamp.isoformat(),
                            "level": log.level,
                            "name": log.name,
                            "flow_run_id": str(log.flow_run_id),
                            "message": log.message,
                            "task_run_id": str(log.task_run_id) if log.task_run_id else None,
                        }
                        out.write(json.dumps(redactor.value(record, out.counts), ensure_ascii=False) + "\n")
                    if len(page) < LOG_PAGE:
                        break
                    offset += len(page)
    except Exception as err:  # noqa: BLE001
        errors.append(_error("prefect:logs", err))


def collect_slack(staging: Staging, messages: Sequence[Mapping[str, Any]], redactor: Redactor) -> None:
    """The incident's Slack thread, one redacted message per line."""
    if not messages:
        return
    with staging.member("slack/thread.jsonl", "slack:thread") as out:
        for message in messages:
            out.write(json.dumps(redactor.value(dict(message), out.counts), sort_keys=True,
                                 ensure_ascii=False) + "\n")


def expand_globs(
    patterns: Sequence[str], exclude: Path, incident_id: str = ""
) -> tuple[list[Path], list[str]]:
    """Files matched by the policy's globs (sorted, de-duplicated), and the globs that matched none.

    `{incident_id}` in a glob is replaced by the incident's id, so a policy can name per-incident
    files (`/var/log/ci/{incident_id}/*.log`, the CI log where a secret was found). Nothing under
    `exclude` (the evidence directory) is collected: bundles must not nest.
    """
    files: dict[Path, None] = {}
    empty: list[str] = []
    skip = exclude.resolve()
    for pattern in patterns:
        concrete = os.path.expanduser(pattern.replace("{incident_id}", glob.escape(incident_id)))
        hits = sorted(Path(p) for p in glob.glob(concrete, recursive=True))
        hits = [p for p in hits if p.is_file() and not p.resolve().is_relative_to(skip)]
        if not hits:
            empty.append(pattern)
        files.update(dict.fromkeys(hits))
    return list(files), empty


def collect_logs(staging: Staging, patterns: Sequence[str], exclude: Path, redactor: Redactor,
                 errors: list[str], incident_id: str = "") -> None:
    """Log files named by the policy, streamed in bounded memory."""
    files, empty = expand_globs(patterns, exclude, incident_id)
    errors += [f"log:{pattern}: matched no file" for pattern in empty]
    for i, path in enumerate(files):
        safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in path.name)[:100] or "log"
        try:
            with staging.member(f"logs/{i:03d}-{safe}", f"log:{path}") as out:
                for piece in redact_stream(read_chunks(path), redactor, out.counts):
                    out.write(piece)
        except OSError as err:
            errors.append(f"log:{path}: {type(err).__name__}: {err.strerror}")


def collect_extra(staging: Staging, extra: Mapping[str, Any], redactor: Redactor) -> None:
    """The playbook's own facts (the alert, severity ...), redacted, as `extra.json`."""
    if extra:
        _json_member(staging, "extra.json", "playbook:extra", dict(extra), redactor)
