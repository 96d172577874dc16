"""Who may do what: debug_token, system-user tokens, business users, system users, WABA assignments.

Choices where Meta is silent (reference section 10):
- DELETE /{user-id}/access_tokens invalidates every token that user owns (the token making the call
  included, when it is one of them); the semantics for system users are unconfirmed at Meta.
- debug_token of a string that is no token answers `{"data": {"error": {...190...}, "is_valid":
  false, "scopes": []}}`; of a revoked token, the token's data with is_valid=false and an `error`
  object (code 190, subcode 467); of an expired one, subcode 463.
- a removed business user's tokens stay valid in debug_token but lose access to the business's
  objects (code 200), since the token belongs to the person, not the business.
- DELETE /{waba}/assigned_users for a user who is not assigned succeeds (idempotent); a user id that
  is no user of the business is code 100.
- No DELETE exists for a system user: DELETE /{system-user-id} is 100/33, as Graph answers for an
  unsupported operation.
"""

from __future__ import annotations

import time
from typing import Any, get_args

from waguard.meta.simulator import envelope as E
from waguard.meta.simulator import rules
from waguard.meta.simulator.calls import NODE, ROOT, Answer, Call, Operation
from waguard.meta.simulator.seed import WabaTask
from waguard.meta.simulator.state import AppToken

SIXTY_DAYS_S = 60 * 86400
TASKS = frozenset(get_args(WabaTask))
BUSINESS_SCOPE = "business_management"
ALL = E.ALL_STATUSES


# ---- debug_token ----------------------------------------------------------------------------------


async def debug_token(call: Call) -> Answer:
    """GET /debug_token?input_token=."""
    sim = call.sim
    value = str(call.required("input_token"))
    with sim.lock:
        found = sim.find_token(value)
        if found is None:
            error = {"code": 190, "message": "Invalid OAuth access token."}
            return Answer({"data": {"error": error, "is_valid": False, "scopes": []}})
        app = sim.app_of(found)
        if isinstance(found, AppToken):
            return Answer({"data": {"app_id": app.id, "type": "APP", "application": app.name,
                                    "is_valid": True, "scopes": []}})  # fmt: skip
        data: dict[str, Any] = {
            "app_id": found.app_id,
            "type": found.type,
            "application": app.name,
            "data_access_expires_at": found.data_access_expires_at,
            "expires_at": found.expires_at,
            "is_valid": True,
            "issued_at": found.issued_at,
            "scopes": list(found.scopes),
            "granular_scopes": [g.model_dump() for g in found.granular_scopes],
            "user_id": found.user_id,
        }
        problem = sim.token_problem(found, call.now)
    if problem is not None:
        data["is_valid"] = False
        data["error"] = {"code": problem.code, "message": problem.message, "subcode": problem.subcode}
    return Answer({"data": data})


# ---- system-user tokens ---------------------------------------------------------------------------


async def generate_token(call: Call) -> Answer:
    """POST /{system-user-id}/access_tokens.

    Parameters: business_app, scope, appsecret_proof, set_token_expires_in_60_days.
    """
    app_id = str(call.required("business_app"))
    if app_id not in call.sim.apps:
        raise E.invalid_param("(#100) Param business_app must be an app installed for this system user")
    scopes = rules.list_param(call.required("scope"))
    sixty = str(call.param("set_token_expires_in_60_days") or "false").lower() in ("true", "1")
    token = call.sim.issue_token(call.object_id, scopes, lifetime_s=SIXTY_DAYS_S if sixty else None,
                                 app_id=app_id)
    return Answer({"access_token": token.value})


async def revoke_tokens(call: Call) -> Answer:
    """DELETE /{user-id}/access_tokens: invalidates all the user's tokens, or with `revoke_token` only
    that one (a token of another user, or no token, is code 100)."""
    one = call.param("revoke_token")
    if one is None:
        call.sim.revoke_user_tokens(call.object_id)
        return Answer({"success": True})
    with call.sim.lock:
        token = call.sim.find_token(str(one))
        if token is None or isinstance(token, AppToken) or token.user_id != call.object_id:
            raise E.invalid_param("(#100) Param revoke_token must be an access token of this user")
        call.sim.revoke_token(token.id)
    return Answer({"success": True})


# ---- business users and system users --------------------------------------------------------------

BUSINESS_USER_DEFAULT = ("id", "name", "business", "email", "role")
SYSTEM_USER_DEFAULT = ("id", "name", "role")


def business_user_fields(call: Call, user_id: str) -> dict[str, Any]:
    """Every readable field of a business user."""
    sim = call.sim
    u = sim.business_users[user_id]
    owner = sim.business_of("business_user", user_id)
    first, _, last = u.name.partition(" ")
    return {"id": u.id, "name": u.name, "email": u.email, "role": u.role, "tasks": list(u.tasks),
            "first_name": first, "last_name": last, "title": None, "two_fac_status": "two_fac_enabled",
            "business": {"id": owner.id, "name": owner.name}}  # fmt: skip


def system_user_fields(call: Call, user_id: str) -> dict[str, Any]:
    """Every readable field of a system user."""
    sim = call.sim
    u = sim.system_users[user_id]
    creator = {"id": u.created_by, "name": sim.user_name(u.created_by)} if u.created_by else None
    owner = sim.business_of("system_user", user_id)
    return {"id": u.id, "name": u.name, "role": u.role, "created_by": creator, "created_time": u.created_time,
            "business": {"id": owner.id, "name": owner.name}}  # fmt: skip


async def list_business_users(call: Call) -> Answer:
    """GET /{business-id}/business_users: that business's people only."""
    sim = call.sim
    with sim.lock:
        people = [u for u in sim.business_users if sim.is_member(u, call.object_id)]
        nodes = [business_user_fields(call, u) for u in people]
    fields = call.param("fields")
    rows = [rules.select_fields(n, fields, BUSINESS_USER_DEFAULT, "BusinessUser") for n in nodes]
    return Answer(rules.paginate(rows, call.params, call.page_url))


async def list_system_users(call: Call) -> Answer:
    """GET /{business-id}/system_users: that business's system users only."""
    sim = call.sim
    with sim.lock:
        nodes = [system_user_fields(call, u) for u in sim.system_users if sim.is_member(u, call.object_id)]
    fields = call.param("fields")
    rows = [rules.select_fields(n, fields, SYSTEM_USER_DEFAULT, "SystemUser") for n in nodes]
    return Answer(rules.paginate(rows, call.params, call.page_url))


async def get_business_user(call: Call) -> Answer:
    """GET /{business-user-id}."""
    with call.sim.lock:
        node = business_user_fields(call, call.object_id)
    return Answer(rules.select_fields(node, call.param("fields"), BUSINESS_USER_DEFAULT, "BusinessUser"))


async def get_system_user(call: Call) -> Answer:
    """GET /{system-user-id}."""
    with call.sim.lock:
        node = system_user_fields(call, call.object_id)
    return Answer(rules.select_fields(node, call.param("fields"), SYSTEM_USER_DEFAULT, "SystemUser"))


SETTING_LOG_DEFAULT = ("event_time", "event_type", "actor", "event_object")


async def business_user_setting_logs(call: Call) -> Answer:
    """GET /{business-user-id}/businesssettinglogs: the person's joining, if the log reaches back to it.

    The simulator keeps one entry per person (ADD_BUSINESS_USER at `added_time`); Meta's log has more.
    """
    sim = call.sim
    with sim.lock:
        u = sim.business_users[call.object_id]
        owner = sim.business_of("business_user", u.id)
        rows = []
        if u.added_time:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S+0000", time.gmtime(u.added_time))
            rows.append({"id": f"{u.id}0001", "event_time": stamp, "event_type": "ADD_BUSINESS_USER",
                         "actor": {"id": owner.id, "name": owner.name},
                         "event_object": {"id": u.id, "name": u.name, "type": "BUSINESS_USER"},
                         "extra_data": {"role": u.role}})  # fmt: skip
    rows = [rules.select_fields(r, call.param("fields"), SETTING_LOG_DEFAULT, "BusinessSettingLogsData")
            for r in rows]
    return Answer(rules.paginate(rows, call.params, call.page_url))


async def remove_business_user(call: Call) -> Answer:
    """DELETE /{business-user-id}: the person leaves the business and every WABA assignment."""
    sim = call.sim
    with sim.lock:
        del sim.business_users[call.object_id]
        for users in sim.assignments.values():
            users.pop(call.object_id, None)
    return Answer({"success": True})


# ---- WABA assignments -----------------------------------------------------------------------------

ASSIGNED_DEFAULT = ("id", "name", "tasks")


def _business_param(call: Call) -> None:
    business = str(call.required("business"))
    if business != call.sim.business_of("waba", call.object_id).id:
        raise E.invalid_param("(#100) Param business must be the id of the business that owns this "
                              "WhatsApp Business Account")  # fmt: skip


async def list_assigned(call: Call) -> Answer:
    """GET /{waba-id}/assigned_users?business= (business is required)."""
    _business_param(call)
    sim = call.sim
    with sim.lock:
        rows = []
        owner = sim.business_of("waba", call.object_id)
        for user_id, tasks in sim.assignments[call.object_id].items():
            node = {"id": user_id, "name": sim.user_name(user_id), "tasks": list(tasks),
                    "permitted_tasks": list(tasks),
                    "user_type": "SYSTEM_USER" if user_id in sim.system_users else "BUSINESS_USER",
                    "business": {"id": owner.id, "name": owner.name}}  # fmt: skip
            rows.append(rules.select_fields(node, call.param("fields"), ASSIGNED_DEFAULT, "AssignedUser"))
    return Answer(rules.paginate(rows, call.params, call.page_url))


def _user_param(call: Call) -> str:
    user_id = str(call.required("user"))
    if not call.sim.is_member(user_id, call.sim.business_of("waba", call.object_id).id):
        raise E.invalid_param("(#100) Param user must be the id of a user of this business")
    return user_id


async def add_assigned(call: Call) -> Answer:
    """POST /{waba-id}/assigned_users {user, tasks}."""
    user_id = _user_param(call)
    tasks = rules.enum_list("tasks", call.required("tasks"), TASKS)
    with call.sim.lock:
        call.sim.assignments[call.object_id][user_id] = tasks
    return Answer({"success": True})


async def remove_assigned(call: Call) -> Answer:
    """DELETE /{waba-id}/assigned_users with `user` in the form body or the query."""
    user_id = _user_param(call)
    with call.sim.lock:
        call.sim.assignments[call.object_id].pop(user_id, None)
    return Answer({"success": True})


OPERATIONS = {
    (ROOT, "debug_token", "GET"): Operation("debug_token", debug_token, scope=None, app_token=True),
    ("system_user", "access_tokens", "POST"): Operation(
        "system_user.access_tokens.create", generate_token, scope=BUSINESS_SCOPE, admin=True, proof=True),
    ("system_user", "access_tokens", "DELETE"): Operation(
        "system_user.access_tokens.delete", revoke_tokens, scope=BUSINESS_SCOPE, admin=True),
    ("business_user", "access_tokens", "DELETE"): Operation(
        "business_user.access_tokens.delete", revoke_tokens, scope=BUSINESS_SCOPE, admin=True),
    ("business", "business_users", "GET"): Operation(
        "business.business_users", list_business_users, scope=BUSINESS_SCOPE),
    ("business", "system_users", "GET"): Operation(
        "business.system_users", list_system_users, scope=BUSINESS_SCOPE),
    ("business_user", NODE, "GET"): Operation("business_user.get", get_business_user, scope=BUSINESS_SCOPE),
    ("business_user", "businesssettinglogs", "GET"): Operation(
        "business_user.businesssettinglogs", business_user_setting_logs, scope=BUSINESS_SCOPE),
    ("business_user", NODE, "DELETE"): Operation(
        "business_user.delete", remove_business_user, scope=BUSINESS_SCOPE, admin=True),
    ("system_user", NODE, "GET"): Operation("system_user.get", get_system_user, scope=BUSINESS_SCOPE),
    ("waba", "assigned_users", "GET"): Operation("waba.assigned_users.list", list_assigned, ALL),
    ("waba", "assigned_users", "POST"): Operation("waba.assigned_users.add", add_assigned, ALL, admin=True),
    ("waba", "assigned_users", "DELETE"): Operation(
        "waba.assigned_users.remove", remove_assigned, ALL, admin=True),
}  # fmt: skip
