"""The parameters of each playbook flow, defined once: the flows' signatures, the Prefect UI's run forms,
the intake's run requests and the deployments' Quick-run values in prefect.yaml all come from these models.

Why flat parameters and not one model parameter: Prefect renders a flow's form from its signature, and
a single `params: LeakedSecretParameters` argument would turn the Quick run / Custom run forms into one
nested object (every field under a "params" group, the deployment's defaults nested the same way, the
intake and drills changed with it). So `takes(Model)` gives the flow function the model's fields as its
signature (name, type with the model's constraints, default; each field's description becomes the form's
help text) and the flow body builds the model from what it was given. The form stays flat and
Prefect validates every field against the same constraints as the intake does.

Parameters carry ids and Vault paths, never a secret value or a clear phone number (Prefect stores
them in plain text). Site-specific ids (system users, token paths) are not defaults here: empty means
"the WABA's own, from the business registry" (`waguard.playbook.accounts`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from waguard.playbook.policy import Playbook, Severity

INCIDENT_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"
GRAPH_ID = r"^[0-9]{1,32}$"


class PlaybookParameters(BaseModel):
    """What every playbook flow takes."""

    model_config = ConfigDict(extra="forbid")

    incident_id: str | None = Field(
        None, pattern=INCIDENT_ID_PATTERN,
        description="The incident's key: a re-run with the same key resumes it; empty: a new incident.")
    severity: Severity = Field(
        "SEV2", description="SEV1 (worst) to SEV3; decides what an unanswered approval does.")
    initiator: str | None = Field(
        None, min_length=1, max_length=200,
        description="Who started it: a Slack user id, or intake:<source>.")
    source: str = Field(
        "manual", min_length=1, max_length=300, description="The alert or door that started it.")
    plan: bool = Field(False, description="Read-only preview: list the calls it would make, make none.")
    waba_id: str | None = Field(
        None, pattern=GRAPH_ID,
        description="The WhatsApp Business Account to act on (one of runbooks/businesses.yaml); empty: "
        "the settings' WABA.")
    approval_timeout_s: int | None = Field(
        None, ge=1, description="Seconds to wait for approval in all; empty: the policy's.")
    poll_interval_s: int = Field(1, ge=1, le=60, description="Seconds between checks while paused.")


class LeakedSecretParameters(PlaybookParameters):
    leaked: Literal["app_secret", "token", "both"] = Field(
        "both", description="What leaked: the app secret, a system-user token, or both.")
    leaked_token_path: str | None = Field(
        None, min_length=1,
        description="Vault KV path of the leaked system-user token; empty: the WABA's token from the "
        "registry.")
    leaked_system_user_id: str | None = Field(
        None, pattern=GRAPH_ID,
        description="The system user that token belongs to; empty: the registry's owner of that path.")
    dual_secret_window_s: int = Field(
        900, ge=0, le=86400,
        description="How long webhooks signed with the old app secret are still accepted.")


class TemplateAbuseParameters(PlaybookParameters):
    template_names: list[str] | None = Field(
        None, description="Offending template names (all given filters must match).")
    statuses: list[str] | None = Field(
        None, description="Template statuses that are offending, e.g. PAUSED, REJECTED.")
    reasons: list[str] | None = Field(None, description="Rejection reasons that are offending, e.g. SCAM.")
    created_since: int | None = Field(None, ge=0, description="Only templates created since (Unix seconds).")
    deregister_numbers: list[str] | None = Field(
        None, description="Phone-number ids to deregister (within the 10-per-72-h budget).")
    revoke_token_path: str | None = Field(
        None, min_length=1, description="Vault KV path of the token that created them.")
    revoke_system_user_id: str | None = Field(None, pattern=GRAPH_ID, description="Owner of that token.")


class AccountTakeoverParameters(PlaybookParameters):
    severity: Severity = Field(
        "SEV1", description="SEV1 (worst) to SEV3; decides what an unanswered approval does.")
    phone_number_ids: list[str] | None = Field(
        None, description="Numbers to deregister and re-PIN; empty: every number on the WABA.")
    suspect_users: list[str] | None = Field(
        None, description="Users the alert named (recorded; every user not a named admin is removed anyway).")
    pin_path: str | None = Field(
        None, min_length=1,
        description="Vault KV path for the new two-step PIN; empty: the WABA's, from the registry.")
    rotate_token_path: str | None = Field(
        None, min_length=1, description="Vault KV path of the consumers' token to rotate; empty: the WABA's.")
    rotate_system_user_id: str | None = Field(
        None, pattern=GRAPH_ID, description="Owner of that token; empty: the registry's owner of that path.")


PARAMETER_MODELS: dict[Playbook, type[PlaybookParameters]] = {
    "leaked_secret": LeakedSecretParameters,
    "template_abuse": TemplateAbuseParameters,
    "account_takeover": AccountTakeoverParameters,
}

F = TypeVar("F", bound=Callable[..., Any])


def signature_of(model: type[BaseModel]) -> inspect.Signature:
    """The model's fields as keyword parameters: type (with the field's constraints) and default."""
    params = []
    for name, field in model.model_fields.items():
        annotation = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=field.default,
                                        annotation=annotation))
    return inspect.Signature(params, return_annotation=dict)


def takes(model: type[PlaybookParameters]) -> Callable[[F], F]:
    """Give a flow function `model`'s fields as its signature and its descriptions as the form's help.

    The function itself takes `**given` and builds the model from it (Prefect has already validated
    each value against the same field).
    """
    def apply(fn: F) -> F:
        fn.__signature__ = signature_of(model)  # type: ignore[attr-defined]
        args = "\n".join(f"    {name}: {f.description}"
                         for name, f in model.model_fields.items() if f.description)
        fn.__doc__ = f"{inspect.cleandoc(fn.__doc__ or '')}\n\nArgs:\n{args}\n"
        return fn
    return apply
