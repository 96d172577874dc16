"""GraphClient against respx routes: no secret ever leaks into an error, a repr or a log.

The router, the client and the constants (among them every secret the client sees) come from
tests/fixtures/meta.py.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
import respx
from pydantic import SecretStr

from tests.fixtures.meta import (
    INPUT_TOKEN,
    NEW_TOKEN,
    PIN,
    PN,
    PROOF,
    ROOT,
    SECRETS,
    TOKEN,
    VERIFY,
    WABA,
    envelope,
)
from waguard.meta.client import GraphClient, quiet_http_loggers
from waguard.meta.errors import MetaTokenInvalid, MetaUnavailable

# ---- secrets never leak -----------------------------------------------------------------------------


@pytest.fixture
def quiet_loggers() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in ("httpx", "httpcore")}
    quiet_http_loggers()
    yield
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def assert_no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, "a secret value leaked"


async def test_no_secret_in_errors_reprs_or_logs(
    graph: respx.Router, client: GraphClient, caplog: pytest.LogCaptureFixture, quiet_loggers: None
) -> None:
    caplog.set_level(logging.DEBUG)
    # Meta-shaped failures that echo secrets back, plus retries that log.
    graph.get("/debug_token").respond(
        401, json=envelope(190, f"Invalid OAuth access token {INPUT_TOKEN} (proof {PROOF})",
                           error_user_msg=f"token {TOKEN}")
    )  # fmt: skip
    graph.post(f"/{PN}/register").respond(400, json=envelope(133005, f"PIN {PIN} mismatch"))
    graph.post(f"/{WABA}/subscribed_apps").mock(
        side_effect=httpx.ConnectError(f"refused {ROOT}?appsecret_proof={PROOF}")
    )
    graph.post("/444/access_tokens").respond(json={"access_token": NEW_TOKEN})
    graph.get(f"/{PN}").respond(200, json={"id": PN}, headers={"X-App-Usage": '{"call_count": 95}'})

    errors: list[BaseException] = []
    for call in (
        client.debug_token(SecretStr(INPUT_TOKEN)),
        client.register_phone_number(PN, SecretStr(PIN)),
        client.subscribe_app(WABA, "https://hooks.example/wa", SecretStr(VERIFY)),
    ):
        try:
            await call
        except Exception as err:  # noqa: BLE001 - collecting to inspect
            errors.append(err)
    token = await client.generate_system_user_token(
        "444", app_id="1", scopes=["whatsapp_business_management"]
    )
    await client.get_phone_number(PN)

    assert [type(e) for e in errors] == [MetaTokenInvalid, type(errors[1]), MetaUnavailable]
    for err in errors:
        assert_no_secret(str(err))
        assert_no_secret(repr(err))
        assert_no_secret(repr(vars(err)))
    assert_no_secret(repr(token) + str(token))
    assert_no_secret(repr(client))
    assert any("retry" in r.getMessage() for r in caplog.records)  # logging happened, and stayed clean
    assert any("usage at 95%" in r.getMessage() for r in caplog.records)
    assert_no_secret(caplog.text)
    assert_no_secret("\n".join(repr(r.args) for r in caplog.records))


async def test_httpx_would_log_the_proof_unless_quieted(
    graph: respx.Router, client: GraphClient, caplog: pytest.LogCaptureFixture, quiet_loggers: None
) -> None:
    graph.get(f"/{PN}").respond(json={"id": PN})
    logging.getLogger("httpx").setLevel(logging.INFO)  # what a default INFO set-up does
    caplog.set_level(logging.DEBUG)
    await client.get_phone_number(PN)
    assert PROOF in caplog.text  # the hazard quiet_http_loggers exists for
    caplog.clear()
    quiet_http_loggers()
    await client.get_phone_number(PN)
    assert PROOF not in caplog.text
