"""`GraphClient`: the Graph API calls waguard's playbooks make, each built by `wire.py` and sent by
`GraphSession` (session.py: auth, appsecret_proof, retries, paging, the registration budget).
"""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import SecretStr

from waguard.errors import ConfigError
from waguard.meta import answers, wire
from waguard.meta.errors import MetaUnexpectedResponse
from waguard.meta.models import (
    AppSubscription,
    AssignedUser,
    BusinessUser,
    PhoneNumber,
    SettingLog,
    SubscribedApp,
    SystemUser,
    Template,
    TokenInfo,
)
from waguard.meta.session import GraphSession, quiet_http_loggers

DEFAULT_PHONE_FIELDS = wire.DEFAULT_PHONE_FIELDS
__all__ = ["DEFAULT_PHONE_FIELDS", "GraphClient", "quiet_http_loggers"]


class GraphClient(GraphSession):
    """Async Graph API client for the calls the playbooks make (how each is sent: GraphSession)."""

    # ---- phone numbers -----------------------------------------------------------------------------

    async def get_phone_number(
        self, phone_number_id: str, fields: Sequence[str] = DEFAULT_PHONE_FIELDS
    ) -> PhoneNumber:
        """Status, quality and registration state of one number."""
        return await self._node(wire.get_phone_number(phone_number_id, fields), PhoneNumber)

    async def list_phone_numbers(
        self, waba_id: str, fields: Sequence[str] = DEFAULT_PHONE_FIELDS
    ) -> list[PhoneNumber]:
        """Every number on a WABA."""
        return await self._collect(lambda after: wire.list_phone_numbers(waba_id, fields, after), PhoneNumber)

    async def deregister_phone_number(self, phone_number_id: str) -> None:
        """Take a number off the Cloud API. Spends one unit of the 72 h budget per attempt sent.

        Raises:
            RegistrationBudgetExhausted: the ledger refused; no request was sent.
            MetaRegistrationLocked: Meta refused with 133016 (never retried).
        """
        req = wire.deregister_phone_number(phone_number_id)
        await self._mutate(req, "deregister", phone_number_id)

    async def register_phone_number(
        self, phone_number_id: str, pin: SecretStr, data_localization_region: str | None = None
    ) -> None:
        """Register a number with its two-step PIN. Spends one unit of the 72 h budget per attempt sent."""
        req = wire.register_phone_number(phone_number_id, pin, data_localization_region)
        await self._mutate(req, "register", phone_number_id)

    async def set_two_step_pin(self, phone_number_id: str, pin: SecretStr) -> None:
        """Set a new six-digit two-step PIN (ValueError before sending if it is not six digits)."""
        await self._mutate(wire.set_two_step_pin(phone_number_id, pin))

    # ---- templates ---------------------------------------------------------------------------------

    async def list_templates(
        self,
        waba_id: str,
        *,
        name: str | None = None,
        status: Sequence[str] | None = None,
        category: str | None = None,
        language: str | None = None,
        since: int | None = None,
        until: int | None = None,
        fields: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> list[Template]:
        """Templates of a WABA, filtered server-side; `limit` is the page size, all pages are read."""

        def build(after: str | None) -> wire.GraphRequest:
            return wire.list_templates(
                waba_id, name=name, status=status, category=category, language=language,
                since=since, until=until, fields=fields, limit=limit, after=after,
            )  # fmt: skip

        return await self._collect(build, Template)

    async def get_template(self, template_id: str, fields: Sequence[str] | None = None) -> Template:
        """One template by id."""
        return await self._node(wire.get_template(template_id, fields), Template)

    async def delete_template_by_name(self, waba_id: str, name: str) -> None:
        """Delete every language variant of a template name. DISABLED templates cannot be deleted."""
        await self._mutate(wire.delete_template_by_name(waba_id, name))

    async def delete_template(self, waba_id: str, hsm_id: str, name: str) -> None:
        """Delete exactly one template, by its id and name."""
        await self._mutate(wire.delete_template(waba_id, hsm_id, name))

    # ---- webhook subscriptions ---------------------------------------------------------------------

    async def list_subscribed_apps(self, waba_id: str) -> list[SubscribedApp]:
        """Apps subscribed to a WABA, with any WABA-level callback override."""
        return await self._collect(lambda _after: wire.list_subscribed_apps(waba_id), SubscribedApp)

    async def list_app_subscriptions(self, app_id: str) -> list[AppSubscription]:
        """The app's own webhook callbacks; call with an app access token (`{app-id}|{app-secret}`)."""
        return await self._collect(lambda _after: wire.list_app_subscriptions(app_id), AppSubscription)

    async def subscribe_app(
        self, waba_id: str, override_callback_uri: str | None = None, verify_token: SecretStr | None = None
    ) -> None:
        """Subscribe this app to a WABA, optionally with a callback override (needs its verify token)."""
        await self._mutate(wire.subscribe_app(waba_id, override_callback_uri, verify_token))

    async def unsubscribe_app(self, waba_id: str) -> None:
        """Unsubscribe this app from a WABA, which drops its WABA-level override."""
        await self._mutate(wire.unsubscribe_app(waba_id))

    # ---- tokens ------------------------------------------------------------------------------------

    async def debug_token(self, input_token: SecretStr) -> TokenInfo:
        """What Meta knows about a token; `is_valid=False` proves a revoked token is dead."""
        req = wire.debug_token(input_token)
        body = answers.expect_object(await self._call(req), req.path)
        return answers.parse(TokenInfo, answers.expect_object(body.get("data"), req.path), req.path)

    async def generate_system_user_token(
        self, system_user_id: str, *, app_id: str, scopes: Sequence[str], expires_in_60_days: bool = True
    ) -> SecretStr:
        """Issue a new token for a system user; returned only as `SecretStr` (write it to Vault).

        Raises:
            ConfigError: the client has no app secret; Meta requires appsecret_proof here.
        """
        if self._proof is None:
            raise ConfigError("generate_system_user_token needs the app secret (for appsecret_proof)")
        req = wire.generate_system_user_token(
            system_user_id, app_id=app_id, scopes=scopes, expires_in_60_days=expires_in_60_days
        )
        body = answers.expect_object(await self._call(req), req.path)
        token = body.get("access_token")
        if not isinstance(token, str) or not token:
            raise MetaUnexpectedResponse("answer has no access_token", path=req.path)
        return SecretStr(token)

    async def revoke_system_user_tokens(self, system_user_id: str) -> None:
        """DELETE /{system-user-id}/access_tokens.

        Meta does not document what this does for system users. A flow MUST confirm the outcome
        with `debug_token` (is_valid=false) and fall back to the Business Settings UI when it is not.
        """
        await self._mutate(wire.revoke_system_user_tokens(system_user_id))

    async def revoke_system_user_token(self, system_user_id: str, token: SecretStr) -> None:
        """Revoke one token of a system user (UNCONFIRMED at Meta: confirm with `debug_token`)."""
        await self._mutate(wire.revoke_system_user_token(system_user_id, token))

    # ---- Business Manager users and WABA access ----------------------------------------------------

    async def business_user_setting_logs(self, business_user_id: str) -> list[SettingLog]:
        """A person's Business Settings log entries (when they were added, role changes)."""
        return await self._collect(lambda after: wire.business_user_setting_logs(business_user_id, after),
                                   SettingLog)

    async def list_business_users(self, business_id: str) -> list[BusinessUser]:
        """People in the Business Manager, with role and tasks."""
        return await self._collect(lambda after: wire.list_business_users(business_id, after), BusinessUser)

    async def list_system_users(self, business_id: str) -> list[SystemUser]:
        """System users of the Business Manager."""
        return await self._collect(lambda after: wire.list_system_users(business_id, after), SystemUser)

    async def remove_business_user(self, business_user_id: str) -> None:
        """Remove a person from the Business Manager."""
        await self._mutate(wire.remove_business_user(business_user_id))

    async def list_assigned_users(self, waba_id: str, business_id: str) -> list[AssignedUser]:
        """Users with access to a WABA, and their tasks."""
        return await self._collect(
            lambda after: wire.list_assigned_users(waba_id, business_id, after), AssignedUser
        )

    async def remove_assigned_user(self, waba_id: str, user_id: str) -> None:
        """Take a user's access to a WABA away."""
        await self._mutate(wire.remove_assigned_user(waba_id, user_id))
