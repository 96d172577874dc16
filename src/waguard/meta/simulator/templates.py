"""Message-template operations: list with filters and paging, read one, delete by name or by id.

Rules from Meta's template-management page: delete by name removes every language of the name;
delete by id needs the name too and removes only that id; DISABLED templates cannot be deleted.

Choices where Meta is silent (reference section 10):
- deleting a name that has a DISABLED variant refuses the whole call and deletes nothing;
- the DISABLED and not-found refusals are code 100 "Invalid parameter" with an explanatory
  error_user_msg (Meta documents the rules, not these envelopes);
- deleted templates leave the list and GET /{template-id} answers 100/33 for them; they are kept in
  the admin state (`deleted_templates`) with the time, for drills to inspect;
- the `name` filter matches whole names; `content` and `name_or_content` match substrings;
  `since`/`until` compare the template's creation time (inclusive).
"""

from __future__ import annotations

from typing import Any

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator import rules
from waguard.meta.simulator.calls import NODE, Answer, Call, Operation
from waguard.meta.simulator.seed import TemplateSeed

NODE_TYPE = "WhatsAppBusinessHSM"
NODE_DEFAULT = ("category", "components", "id", "language", "name", "status")  # OAS example of GET /{id}
LIST_DEFAULT = ("name", "parameter_format", "components", "language", "status", "category", "id")
STATUSES = frozenset({"APPROVED", "ARCHIVED", "DELETED", "DISABLED", "IN_APPEAL", "LIMIT_EXCEEDED", "PAUSED",
                      "PENDING", "PENDING_DELETION", "REJECTED"})  # fmt: skip
CATEGORIES = frozenset({"AUTHENTICATION", "MARKETING", "UTILITY"})
QUALITY = frozenset({"GREEN", "YELLOW", "RED", "UNKNOWN"})
ONLY_200 = E.ONLY_200  # the OAS declares no error answers for the template operations


def template_fields(t: TemplateSeed) -> dict[str, Any]:
    """Every readable field of a template."""
    return {
        "id": t.id,
        "name": t.name,
        "language": t.language,
        "status": t.status,
        "category": t.category,
        "components": t.components,
        "parameter_format": "POSITIONAL",
        "rejected_reason": t.reason or "NONE",
        "quality_score": {"score": t.quality_score},
        "sub_category": None,
        "previous_category": None,
    }


def _text(t: TemplateSeed) -> str:
    return " ".join(str(c.get("text", "")) for c in t.components)


def matches(t: TemplateSeed, call: Call) -> bool:
    """Whether a template passes the list filters of the call."""
    name, language, category = call.param("name"), call.param("language"), call.param("category")
    if name is not None and t.name != name:
        return False
    if language is not None and t.language not in rules.list_param(language):
        return False
    if category is not None and t.category not in rules.enum_list("category", category, CATEGORIES):
        return False
    status = call.param("status")
    if status is not None and t.status not in rules.enum_list("status", status, STATUSES):
        return False
    if (quality := call.param("quality_score")) is not None and t.quality_score not in rules.enum_list(
        "quality_score", quality, QUALITY
    ):
        return False
    if (content := call.param("content")) is not None and str(content).lower() not in _text(t).lower():
        return False
    if (either := call.param("name_or_content")) is not None:
        needle = str(either).lower()
        if needle not in t.name.lower() and needle not in _text(t).lower():
            return False
    if (since := call.param("since")) is not None and t.created_time < rules.int_param("since", since):
        return False
    if (until := call.param("until")) is not None and t.created_time > rules.int_param("until", until):
        return False
    return True


async def list_templates(call: Call) -> Answer:
    """GET /{waba-id}/message_templates."""
    with call.sim.lock:
        found = [t for t in call.sim.templates.values() if t.waba_id == call.object_id and matches(t, call)]
        nodes = [template_fields(t) for t in found]
    rows = [rules.select_fields(n, call.param("fields"), LIST_DEFAULT, NODE_TYPE) for n in nodes]
    return Answer(rules.paginate(rows, call.params, call.page_url))


async def get_template(call: Call) -> Answer:
    """GET /{template-id}."""
    with call.sim.lock:
        node = template_fields(call.sim.templates[call.object_id])
    return Answer(rules.select_fields(node, call.param("fields"), NODE_DEFAULT, NODE_TYPE))


async def delete_templates(call: Call) -> Answer:
    """DELETE /{waba-id}/message_templates?name= | ?hsm_id=&name=."""
    hsm_id = call.param("hsm_id")
    name = call.param("name")
    if name is None:
        raise E.missing_param("name")
    name = str(name)
    sim = call.sim
    with sim.lock:
        same_name = [t for t in sim.templates.values() if t.waba_id == call.object_id and t.name == name]
        if hsm_id is not None:
            targets = [t for t in same_name if t.id == str(hsm_id)]
        else:
            targets = same_name
        if not targets:
            raise E.template_missing(name)
        if any(t.status == "DISABLED" for t in targets):
            raise E.template_disabled(name)
        for t in targets:
            del sim.templates[t.id]
            sim.deleted_templates.append({"id": t.id, "waba_id": t.waba_id, "name": t.name,
                                          "language": t.language, "status": t.status, "deleted_at": call.now})
    return Answer({"success": True})


OPERATIONS = {
    ("waba", "message_templates", "GET"): Operation("waba.message_templates.list", list_templates, ONLY_200),
    ("waba", "message_templates", "DELETE"): Operation(
        "waba.message_templates.delete", delete_templates, ONLY_200),
    ("template", NODE, "GET"): Operation("template.get", get_template, ONLY_200),
}
