"""The pure Graph protocol: request building, error decoding, usage headers, back-off."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from pydantic import SecretStr

from waguard.meta import answers, usage, wire
from waguard.meta.errors import (
    MetaError,
    MetaInvalidRequest,
    MetaNotFound,
    MetaRegistrationLocked,
    MetaThrottled,
    MetaTokenInvalid,
    MetaTransient,
    MetaUnexpectedResponse,
)

PIN = SecretStr("123456")
VERIFY = SecretStr("verify-me")
TOKEN_UNDER_TEST = SecretStr("EAAtokenunderinspection")


# ---- appsecret_proof and User-Agent -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "secret", "proof"),
    [  # vectors from `printf TOKEN | openssl dgst -sha256 -hmac SECRET`
        ("tok", "sec", "b13512356d1403d2449aa2e7369214f0459f0d3c08cb742b0aff4fe57aae36f5"),
        (
            "EAAB-system-user-token",
            "app-secret-1",
            "08ea98451d2f7912c7b06e51a288d5d0b807c458524ccbf54025921444f9ee9c",
        ),
    ],
)
def test_appsecret_proof_matches_openssl(token: str, secret: str, proof: str) -> None:
    assert wire.appsecret_proof(token, secret) == proof
    assert wire.appsecret_proof(SecretStr(token), SecretStr(secret)) == proof


def test_user_agent_matches_meta_pattern() -> None:
    pattern = (
        r"^[a-zA-Z0-9\-_]+\/[0-9]+\.[0-9]+\.[0-9]+(;[a-zA-Z0-9\-=\.]+)?(\s+[a-zA-Z0-9\-_]+\/[0-9\-\.]+)?$"
    )
    assert re.match(pattern, wire.user_agent())
    assert wire.user_agent().startswith("waguard/")


# ---- request builders -------------------------------------------------------------------------------

# builder call -> (method, path, params, json, form); SecretStr values compared after unwrapping
BUILDS: list[tuple[str, wire.GraphRequest, tuple[str, str, dict[str, str], Any, Any]]] = [
    ("deregister", wire.deregister_phone_number("111"), ("POST", "/111/deregister", {}, None, None)),
    (
        "register",
        wire.register_phone_number("111", PIN),
        ("POST", "/111/register", {}, {"messaging_product": "whatsapp", "pin": "123456"}, None),
    ),
    (
        "register in region",
        wire.register_phone_number("111", PIN, "DE"),
        (
            "POST",
            "/111/register",
            {},
            {"messaging_product": "whatsapp", "pin": "123456", "data_localization_region": "DE"},
            None,
        ),
    ),
    ("set pin", wire.set_two_step_pin("111", PIN), ("POST", "/111", {}, {"pin": "123456"}, None)),
    (
        "get phone",
        wire.get_phone_number("111", ["id", "status"]),
        ("GET", "/111", {"fields": "id,status"}, None, None),
    ),
    (
        "list phones, page 2",
        wire.list_phone_numbers("222", ["id"], after="CUR"),
        ("GET", "/222/phone_numbers", {"fields": "id", "after": "CUR"}, None, None),
    ),
    (
        "list templates filtered",
        wire.list_templates(
            "222",
            name="promo",
            status=["APPROVED", "PAUSED"],
            category="MARKETING",
            language="en_US",
            since=10,
            until=20,
            fields=["id", "name"],
            limit=50,
        ),  # fmt: skip
        (
            "GET",
            "/222/message_templates",
            {
                "fields": "id,name",
                "name": "promo",
                "status": "APPROVED,PAUSED",
                "category": "MARKETING",
                "language": "en_US",
                "since": "10",
                "until": "20",
                "limit": "50",
            },  # fmt: skip
            None,
            None,
        ),
    ),
    (
        "get template",
        wire.get_template("333", ["id"]),
        ("GET", "/333", {"fields": "id"}, None, None),
    ),
    (
        "delete template by name",
        wire.delete_template_by_name("222", "promo"),
        ("DELETE", "/222/message_templates", {"name": "promo"}, None, None),
    ),
    (
        "delete template by id",
        wire.delete_template("222", "333", "promo"),
        ("DELETE", "/222/message_templates", {"hsm_id": "333", "name": "promo"}, None, None),
    ),
    (
        "list subscribed apps",
        wire.list_subscribed_apps("222"),
        ("GET", "/222/subscribed_apps", {}, None, None),
    ),
    ("subscribe", wire.subscribe_app("222"), ("POST", "/222/subscribed_apps", {}, None, None)),
    (
        "subscribe with override",
        wire.subscribe_app("222", "https://hooks.example/wa", VERIFY),
        (
            "POST",
            "/222/subscribed_apps",
            {},
            {"override_callback_uri": "https://hooks.example/wa", "verify_token": "verify-me"},
            None,
        ),
    ),
    ("unsubscribe", wire.unsubscribe_app("222"), ("DELETE", "/222/subscribed_apps", {}, None, None)),
    (
        "debug token",
        wire.debug_token(TOKEN_UNDER_TEST),
        ("GET", "/debug_token", {"input_token": "EAAtokenunderinspection"}, None, None),
    ),
    (
        "generate token",
        wire.generate_system_user_token("444", app_id="555", scopes=["whatsapp_business_management"]),
        (
            "POST",
            "/444/access_tokens",
            {},
            None,
            {
                "business_app": "555",
                "scope": "whatsapp_business_management",
                "set_token_expires_in_60_days": "true",
            },
        ),
    ),
    (
        "generate never-expiring token",
        wire.generate_system_user_token("444", app_id="555", scopes=["a", "b"], expires_in_60_days=False),
        (
            "POST",
            "/444/access_tokens",
            {},
            None,
            {"business_app": "555", "scope": "a,b", "set_token_expires_in_60_days": "false"},
        ),
    ),
    (
        "revoke tokens",
        wire.revoke_system_user_tokens("444"),
        ("DELETE", "/444/access_tokens", {}, None, None),
    ),
    (
        "business users",
        wire.list_business_users("666"),
        ("GET", "/666/business_users", {"fields": "id,name,email,role,tasks"}, None, None),
    ),
    (
        "system users",
        wire.list_system_users("666"),
        ("GET", "/666/system_users", {"fields": "id,name,role,created_by,created_time"}, None, None),
    ),
    ("remove business user", wire.remove_business_user("777"), ("DELETE", "/777", {}, None, None)),
    (
        "assigned users",
        wire.list_assigned_users("222", "666"),
        ("GET", "/222/assigned_users", {"business": "666", "fields": "id,name,tasks"}, None, None),
    ),
    (
        "remove assigned user",
        wire.remove_assigned_user("222", "888"),
        ("DELETE", "/222/assigned_users", {}, None, {"user": "888"}),
    ),
]


@pytest.mark.parametrize(("label", "req", "expected"), BUILDS, ids=[b[0] for b in BUILDS])
def test_builders(
    label: str, req: wire.GraphRequest, expected: tuple[str, str, dict[str, str], Any, Any]
) -> None:
    method, path, params, body, form = expected
    assert (req.method, req.path) == (method, path)
    assert wire.unwrap_secrets(req.params) == params
    assert wire.unwrap_secrets(req.json) == body
    assert wire.unwrap_secrets(req.form) == form


@pytest.mark.parametrize(("label", "req", "expected"), BUILDS, ids=[b[0] for b in BUILDS])
def test_request_repr_hides_secret_values(label: str, req: wire.GraphRequest, expected: Any) -> None:
    for secret in ("123456", "verify-me", "EAAtokenunderinspection"):
        assert secret not in repr(req) and secret not in str(req)


BAD_INPUT = [
    ("pin of 5 digits", lambda: wire.set_two_step_pin("111", SecretStr("12345")), "pin"),
    ("pin with letters", lambda: wire.register_phone_number("111", SecretStr("12a456")), "pin"),
    ("plain str pin", lambda: wire.set_two_step_pin("111", "123456"), "pin"),  # type: ignore[arg-type]
    ("path injection", lambda: wire.deregister_phone_number("111/../222"), "phone_number_id"),
    ("id with newline", lambda: wire.deregister_phone_number("111\n"), "phone_number_id"),
    ("pin with newline", lambda: wire.set_two_step_pin("111", SecretStr("123456\n")), "pin"),
    ("unicode digits", lambda: wire.deregister_phone_number("\u0661\u0662"), "phone_number_id"),
    ("token as id", lambda: wire.get_phone_number("EAAsecretsecret"), "phone_number_id"),
    ("empty name", lambda: wire.delete_template_by_name("222", " "), "name"),
    ("non-numeric hsm", lambda: wire.delete_template("222", "x", "promo"), "hsm_id"),
    ("unknown status", lambda: wire.list_templates("222", status=["NOPE"]), "status"),
    ("status as str", lambda: wire.list_templates("222", status="APPROVED"), "status"),
    ("bad region", lambda: wire.register_phone_number("111", PIN, "germany"), "data_localization_region"),
    ("override without token", lambda: wire.subscribe_app("222", "https://x"), "verify_token"),
    ("override too long", lambda: wire.subscribe_app("222", "https://" + "x" * 200, VERIFY), "override"),
    ("no scopes", lambda: wire.generate_system_user_token("444", app_id="555", scopes=[]), "scopes"),
    ("empty input token", lambda: wire.debug_token(SecretStr("")), "input_token"),
    ("negative since", lambda: wire.list_templates("222", since=-1), "since"),
    ("bad fields", lambda: wire.get_phone_number("111", "id,status"), "fields"),
]


@pytest.mark.parametrize(("label", "build", "field"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
def test_bad_input_names_the_field_never_the_value(label: str, build: Any, field: str) -> None:
    with pytest.raises(ValueError) as caught:
        build()
    assert field in str(caught.value)
    for value in ("12345", "12a456", "EAAsecretsecret", "111/../222", "NOPE", "germany"):
        assert value not in str(caught.value)


# ---- reading answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "items", "cursor"),
    [
        ({"data": [{"id": "1"}]}, [{"id": "1"}], None),
        (
            {"data": [{"id": "1"}], "paging": {"cursors": {"after": "A"}, "next": "https://g/next"}},
            [{"id": "1"}],
            "A",
        ),
        ({"data": [], "paging": {"cursors": {"after": "A"}}}, [], None),  # no `next`: last page
        ({"data": [{"id": "1"}, "junk"], "paging": {"next": "https://g/next"}}, [{"id": "1"}], None),
    ],
)
def test_page(body: dict[str, Any], items: list[dict[str, Any]], cursor: str | None) -> None:
    assert answers.page(body, "/1/x") == (items, cursor)


@pytest.mark.parametrize("body", [{"success": False}, {"id": "1"}, [], "ok", None, {"success": "true"}])
def test_expect_success_refuses_anything_else(body: Any) -> None:
    with pytest.raises(MetaUnexpectedResponse) as caught:
        answers.expect_success(body, "/1/deregister")
    assert "/1/deregister" in str(caught.value)


def test_unexpected_answer_names_keys_never_values() -> None:
    with pytest.raises(MetaUnexpectedResponse) as caught:
        answers.expect_success({"access_token": "EAAleakedvalue123"}, "/1/x")
    assert "access_token" in str(caught.value) and "EAAleakedvalue123" not in str(caught.value)


def _envelope(**error: Any) -> bytes:
    return json.dumps({"error": error}).encode()


DECODES = [
    (
        400,
        {},
        _envelope(message="Too many", type="OAuthException", code=133016, fbtrace_id="T1"),
        MetaRegistrationLocked,
    ),
    (401, {}, _envelope(message="Session has expired", code=190, error_subcode=463), MetaTokenInvalid),
    (500, {}, _envelope(message="Service temporarily unavailable", code=2, is_transient=True), MetaTransient),
    (400, {}, _envelope(message="Unsupported get request", code=100, error_subcode=33), MetaNotFound),
    (502, {}, b"<html>bad gateway</html>", MetaTransient),
    (429, {"Retry-After": "7"}, b"", MetaThrottled),
    (400, {}, _envelope(message="weird", code="4"), MetaThrottled),  # code sent as a string
    (418, {}, b"{not json", MetaInvalidRequest),
    (302, {"Location": "https://elsewhere"}, b"", MetaError),
]


@pytest.mark.parametrize(("status", "headers", "body", "cls"), DECODES)
def test_decode_error_class(status: int, headers: dict[str, str], body: bytes, cls: type[MetaError]) -> None:
    err = answers.decode_error(status, headers, body, path="/1/x")
    assert type(err) is cls and err.http_status == status and err.path == "/1/x"


def test_decode_error_reads_every_envelope_field() -> None:
    body = _envelope(
        message="Invalid parameter", type="OAuthException", code=100, error_subcode=2494010,
        error_user_title="Bad PIN", error_user_msg="Check the PIN", fbtrace_id="AXsgn",
        is_transient=False, error_data={"details": "Two-step verification PIN incorrect."},
    )  # fmt: skip
    err = answers.decode_error(400, {}, body)
    assert (err.code, err.subcode, err.type, err.fbtrace_id) == (100, 2494010, "OAuthException", "AXsgn")
    assert (err.user_title, err.user_msg) == ("Bad PIN", "Check the PIN")
    assert err.details == "Two-step verification PIN incorrect."
    assert err.message == "Invalid parameter"
    # error_data sometimes arrives as a JSON string
    err2 = answers.decode_error(400, {}, _envelope(message="m", code=131000, error_data='{"details": "d"}'))
    assert err2.details == "d"


def test_decode_error_redacts_known_secrets_and_never_copies_a_foreign_body() -> None:
    err = answers.decode_error(400, {}, _envelope(message="bad token hunter22", code=190), secrets=["hunter22"])
    assert "hunter22" not in str(err)
    err = answers.decode_error(502, {}, b"<html>proxy error for /v23.0/1?access_token=EAAsecret</html>")
    assert "EAAsecret" not in str(err) and "proxy" not in str(err)


# ---- usage headers and back-off ---------------------------------------------------------------------

BUC = json.dumps(
    {
        "3000000001": [
            {"type": "whatsapp_business_management", "call_count": 95, "total_cputime": 10, "total_time": 12,
             "estimated_time_to_regain_access": 3},
            {"type": "whatsapp", "call_count": 1, "total_cputime": 1, "total_time": 1,
             "estimated_time_to_regain_access": 0},
        ]
    }
)  # fmt: skip


def test_parse_usage_headers() -> None:
    headers = {
        "X-App-Usage": '{"call_count":12,"total_cputime":40,"total_time":7}',
        "x-business-use-case-usage": BUC,
    }
    app = wire.parse_app_usage(headers)
    assert app is not None and (app.call_count, app.total_cputime, app.total_time, app.peak) == (
        12,
        40,
        7,
        40,
    )
    buc = wire.parse_business_usage(headers)
    assert [(u.business_id, u.type, u.call_count, u.estimated_time_to_regain_access) for u in buc] == [
        ("3000000001", "whatsapp_business_management", 95, 3),
        ("3000000001", "whatsapp", 1, 0),
    ]
    assert wire.usage_peak(headers) == 95


@pytest.mark.parametrize("garbage", ["", "not json", "[1,2]", '{"x": "y"}', "null"])
def test_garbled_usage_headers_are_ignored(garbage: str) -> None:
    headers = {"X-App-Usage": garbage, "X-Business-Use-Case-Usage": garbage, "Retry-After": garbage}
    assert wire.parse_business_usage(headers) == []
    assert usage.retry_after_seconds(headers) is None
    assert wire.usage_peak(headers) == 0


@pytest.mark.parametrize(
    ("source", "attempt", "cap", "jitter", "delay"),
    [
        ({"Retry-After": "7"}, 0, 60, 0.5, 7.0),  # Meta's hint wins over exponential and jitter
        ({"X-Business-Use-Case-Usage": BUC}, 0, 600, 0.0, 180.0),  # 3 minutes to regain access
        ({"X-Business-Use-Case-Usage": BUC, "Retry-After": "30"}, 0, 600, 0.0, 180.0),  # the larger hint
        ({"X-Business-Use-Case-Usage": BUC}, 0, 60, 0.0, 60.0),  # capped
        ({}, 0, 60, 0.0, 1.0),
        ({}, 1, 60, 0.0, 2.0),
        ({}, 3, 60, 0.25, 8.25),
        ({}, 10, 60, 0.9, 60.0),
        (None, 2, 60, 0.0, 4.0),
        (MetaThrottled("slow down", retry_after=12.0), 0, 60, 0.3, 12.0),
        (MetaTransient("blip"), 2, 60, 0.5, 4.5),
        ({}, 10_000, 60, 0.0, 60.0),  # no overflow
    ],
)
def test_backoff_seconds(source: Any, attempt: int, cap: float, jitter: float, delay: float) -> None:
    assert wire.backoff_seconds(source, attempt, cap, jitter) == delay


def test_decode_error_carries_header_derived_retry_after() -> None:
    err = answers.decode_error(400, {"X-Business-Use-Case-Usage": BUC}, _envelope(message="limit", code=80008))
    assert isinstance(err, MetaThrottled) and err.retry_after == 180.0
