"""Detection on Meta's WhatsApp webhooks (pure): which changes mean template abuse or a takeover.

One delivery may batch many entries (one per WABA) and many changes; the result is at most one
start per (WABA, playbook), carrying every template, status and reason seen. Fields waguard does not
act on (messages, quality updates, ...) are recorded, never refused: a 4xx makes Meta retry for days.
Phone numbers are never copied out of a payload; only Graph phone-number ids are, when present.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from waguard.intake.routing import MetaRouting, Route, Start
from waguard.playbook.policy import Playbook

_ID_CHARS = frozenset("0123456789")
_WORD = re.compile(r"[^A-Za-z0-9_]+")


class MetaChange(BaseModel):
    field: str = Field(max_length=128)
    value: dict[str, Any] = Field(default_factory=dict)


class MetaEntry(BaseModel):
    id: str = Field(min_length=1, max_length=64)
    time: int | None = None
    changes: list[MetaChange] = Field(default_factory=list, max_length=5000)


class MetaDelivery(BaseModel):
    """A WhatsApp Business Account webhook delivery."""

    object: Literal["whatsapp_business_account"]
    entry: list[MetaEntry] = Field(max_length=5000)


def _text(value: Any, limit: int = 512) -> str | None:
    return value[:limit] if isinstance(value, str) and value else None


def _graph_id(value: Any) -> str | None:
    text = str(value) if isinstance(value, int | str) else ""
    return text if 0 < len(text) <= 32 and set(text) <= _ID_CHARS else None


def _add(bucket: dict[str, list[str]], name: str, value: str | None) -> None:
    if value is not None and value not in bucket.setdefault(name, []):
        bucket[name].append(value)


def detect(delivery: MetaDelivery, cfg: MetaRouting) -> Route:
    """Decide which playbooks a Meta delivery starts, per WABA."""
    found: dict[tuple[str, Playbook], dict[str, list[str]]] = {}
    fields_seen: set[str] = set()
    for entry in delivery.entry:
        waba = _graph_id(entry.id)
        if waba is None:
            continue
        for change in entry.changes:
            fields_seen.add(change.field)
            value = change.value
            event = _text(value.get("event"), 64)
            if change.field == "message_template_status_update" and cfg.template_abuse:
                t = cfg.template_abuse
                reason = _text(value.get("reason"), 64)
                abusive = event in t.statuses or (event == "REJECTED" and reason in t.rejected_reasons)
                if abusive:
                    # The template is named, not filtered by the event: FLAGGED is an event, never a
                    # template status, so a status filter built from it would find nothing to delete.
                    bucket = found.setdefault((waba, "template_abuse"), {"template_names": []})
                    _add(bucket, "template_names", _text(value.get("message_template_name"), 512))
            elif change.field in ("account_update", "security") and cfg.account_takeover:
                a = cfg.account_takeover
                events = a.account_update_events if change.field == "account_update" else a.security_events
                if event in events:
                    bucket = found.setdefault((waba, "account_takeover"),
                                              {"phone_number_ids": [], "suspect_users": []})
                    metadata = value.get("metadata")
                    pn = value.get("phone_number_id") or (metadata.get("phone_number_id")
                                                          if isinstance(metadata, dict) else None)
                    _add(bucket, "phone_number_ids", _graph_id(pn))
                    _add(bucket, "suspect_users", _graph_id(value.get("requester")))
    starts = []
    for (waba, playbook), params in sorted(found.items()):
        severity = (cfg.template_abuse.severity if playbook == "template_abuse" and cfg.template_abuse
                    else cfg.account_takeover.severity if cfg.account_takeover else "SEV1")
        event = "template_status" if playbook == "template_abuse" else "account"
        starts.append(Start(playbook, f"meta:{waba}:{playbook}", severity, f"meta:{waba}:{event}",
                            {"waba_id": waba, **params}))
    plain = sorted({_WORD.sub("", f)[:40] for f in fields_seen})[:10]  # notes reach the audit log
    notes = () if starts else (f"no detection in fields {', '.join(plain)}",)
    return Route(starts=tuple(starts), notes=notes)
