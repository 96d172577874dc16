"""What the Graph API answers, as pydantic models.

`extra="allow"` keeps fields Meta adds later (and the ones a flow asks for with `fields=`) instead of
failing on them. Only `id` is required on nodes: Graph returns just the fields that were asked for.
None of these carry a secret: tokens come back from `generate_system_user_token` as `SecretStr`,
never inside a model, and `TokenInfo` describes a token without holding it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class GraphNode(BaseModel):
    """Base of every Graph answer model: tolerant of new fields, immutable once read."""

    model_config = ConfigDict(extra="allow", frozen=True)


class PhoneNumber(GraphNode):
    """A WhatsApp Business phone number node (GET /{phone-number-id} or a WABA's phone_numbers)."""

    id: str
    display_phone_number: str | None = None
    verified_name: str | None = None
    status: str | None = Field(None, description="Meta's status string, e.g. CONNECTED, PENDING, BANNED.")
    quality_rating: str | None = Field(None, description="GREEN, YELLOW, RED or NA.")
    code_verification_status: str | None = None
    name_status: str | None = None
    platform_type: str | None = Field(None, description="CLOUD_API when registered, NOT_APPLICABLE when not.")
    throughput: dict[str, Any] | None = None
    account_mode: str | None = None
    is_official_business_account: bool | None = None
    health_status: dict[str, Any] | None = Field(None, description="can_send_message per entity.")
    whatsapp_business_manager_messaging_limit: str | None = None


class Template(GraphNode):
    """A message template node (GET /{template-id} or a WABA's message_templates)."""

    id: str
    name: str | None = None
    status: str | None = None
    category: str | None = None
    language: str | None = None
    components: list[dict[str, Any]] | None = None
    rejected_reason: str | None = None
    quality_score: dict[str, Any] | None = None


class AppData(GraphNode):
    """The app behind a WABA subscription."""

    id: str | None = None
    name: str | None = None
    link: str | None = None


class SubscribedApp(GraphNode):
    """One app subscribed to a WABA's webhooks, with the WABA-level override if one is set.

    Graph nests the app under `whatsapp_business_api_data`; OAS's `SubscribedApp` schema shows a
    flat `{id, name}`. Both parse (the flat keys land in the extras); use `app_id`.
    """

    whatsapp_business_api_data: AppData | None = None
    override_callback_uri: str | None = None

    @property
    def app_id(self) -> str | None:
        """The subscribed app's id, from whichever shape Meta sent."""
        if self.whatsapp_business_api_data and self.whatsapp_business_api_data.id:
            return self.whatsapp_business_api_data.id
        flat = (self.model_extra or {}).get("id")
        return str(flat) if flat is not None else None


class AppSubscription(GraphNode):
    """One object the app receives webhooks for (GET /{app-id}/subscriptions), with its callback URL."""

    object: str
    callback_url: str | None = None
    active: bool | None = None
    fields: list[dict[str, Any]] = Field(default_factory=list)


class GranularScope(GraphNode):
    """A permission and the object ids (WABA ids for WhatsApp scopes) it is limited to."""

    scope: str
    target_ids: list[str] = Field(default_factory=list)


class TokenInfo(GraphNode):
    """`data` of GET /debug_token: what a token is and whether it still works.

    `is_valid=False` is the proof that a revoked token is dead. `expires_at == 0` means never.
    """

    is_valid: bool
    app_id: str | None = None
    type: str | None = Field(None, description="USER, SYSTEM_USER, APP or PAGE.")
    application: str | None = None
    expires_at: int | None = None
    data_access_expires_at: int | None = None
    issued_at: int | None = None
    scopes: list[str] = Field(default_factory=list)
    granular_scopes: list[GranularScope] = Field(default_factory=list)
    user_id: str | None = None


class BusinessUser(GraphNode):
    """A person in the Business Manager (GET /{business-id}/business_users)."""

    id: str
    name: str | None = None
    email: str | None = None
    role: str | None = Field(None, description="ADMIN, EMPLOYEE, ... (Business Manager role).")
    tasks: list[str] = Field(default_factory=list)


class SystemUser(GraphNode):
    """A system user of the Business Manager (GET /{business-id}/system_users)."""

    id: str
    name: str | None = None
    role: str | None = None
    created_by: dict[str, Any] | None = Field(None, description="The user who created it: {id, name}.")
    created_time: str | None = None


class AssignedUser(GraphNode):
    """A user with access to a WABA, and the tasks granted (GET /{waba-id}/assigned_users)."""

    id: str
    name: str | None = None
    tasks: list[str] = Field(default_factory=list)


class SettingLog(GraphNode):
    """One Business Settings log entry (GET /{business-user-id}/businesssettinglogs)."""

    event_time: str | None = Field(None, description="ISO 8601, e.g. 2026-11-24T10:00:00+0000.")
    event_type: str | None = None
    actor: dict[str, Any] | None = None
    event_object: dict[str, Any] | None = None
