"""The Meta Graph simulator over real HTTP: access tokens, appsecret_proof, and secrets kept out of
the request record, the state and (by property) the masker.

Raw Graph calls go through `tests.support.meta_sim`; the expected answers follow the reference
(shared/reference/meta-graph-api.md).
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import assume, given
from hypothesis import strategies as st

from tests.fixtures.meta import MetaSim
from tests.support.meta_sim import WA, code, debug, error, graph, issue
from waguard.meta.simulator.record import Masker
from waguard.meta.simulator.rules import appsecret_proof

# ---- access tokens and appsecret_proof ------------------------------------------------------------


def test_token_problems_answer_metas_codes(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.number_id}"
    assert code(graph(m, "GET", path, token=None)) == 104
    unknown = graph(m, "GET", path, token="EAAGunknown0123456789abcdef")
    assert unknown.status_code == 401 and code(unknown) == 190
    short_lived = issue(m, "6000000001", lifetime_s=3600)["access_token"]
    assert graph(m, "GET", path, token=short_lived).status_code == 200
    m.advance(3601)
    expired = error(graph(m, "GET", path, token=short_lived))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    m.admin.post("/_sim/tokens/revoke", json={"token_id": m.token_id}).raise_for_status()
    revoked = error(graph(m, "GET", path))
    assert (revoked["code"], revoked["error_subcode"]) == (190, 467)


def test_appsecret_proof_is_checked_against_the_current_secret(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.number_id}"
    assert graph(m, "GET", path, proof=None).status_code == 200  # switch off: proof optional
    wrong = error(graph(m, "GET", path, proof="0" * 64))
    assert (wrong["code"], wrong["type"]) == (100, "GraphMethodException")
    assert wrong["message"] == "Invalid appsecret_proof provided in the API argument"
    m.admin.post("/_sim/app/require-proof", json={"enabled": True}).raise_for_status()
    missing = error(graph(m, "GET", path, proof=None))
    assert (missing["code"], missing["type"]) == (100, "GraphMethodException")
    old_proof = appsecret_proof(m.token.get_secret_value(), m.app_secret.get_secret_value())
    assert graph(m, "GET", path, proof=old_proof).status_code == 200
    new_secret = m.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    assert new_secret == m.app_secret.get_secret_value()
    assert error(graph(m, "GET", path, proof=old_proof))["message"].startswith("Invalid appsecret_proof")
    assert graph(m, "GET", path).status_code == 200  # a proof under the new secret


def test_debug_token_reports_revocation_and_app_tokens_follow_the_secret(meta_sim: MetaSim) -> None:
    m = meta_sim
    other = issue(m, "6000000002", type="USER")
    data = debug(m, other["access_token"]).json()["data"]
    assert data["is_valid"] is True and data["type"] == "USER" and data["user_id"] == "6000000002"
    assert {"app_id", "application", "expires_at", "data_access_expires_at", "issued_at", "scopes",
            "granular_scopes"} <= set(data)  # fmt: skip
    m.admin.post("/_sim/tokens/revoke", json={"token_id": other["id"]}).raise_for_status()
    data = debug(m, other["access_token"]).json()["data"]
    assert data["is_valid"] is False and data["error"]["code"] == 190
    assert debug(m, "not-a-token-at-all").json()["data"]["is_valid"] is False
    app_token = f"{m.app_id}|{m.app_secret.get_secret_value()}"
    assert debug(m, m.token.get_secret_value(), token=app_token, proof=None).json()["data"]["is_valid"]
    m.admin.post("/_sim/app/reset-secret").raise_for_status()
    assert code(debug(m, app_token, token=app_token, proof=None)) == 190


def test_system_user_tokens_generate_with_proof_and_revoke_together(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.system_user_id}/access_tokens"
    form = {"business_app": m.app_id, "scope": "whatsapp_business_management",
            "set_token_expires_in_60_days": "true"}  # fmt: skip
    assert code(graph(m, "POST", path, proof=None, data=form)) == 100  # proof required here
    assert code(graph(m, "POST", path, data={"scope": "x"})) == 100  # business_app required
    new = graph(m, "POST", path, data=form).json()["access_token"]
    info = debug(m, new).json()["data"]
    assert info["is_valid"] and info["type"] == "SYSTEM_USER" and info["expires_at"] > info["issued_at"]
    assert graph(m, "DELETE", path).json() == {"success": True}
    assert [t["is_valid"] for t in m.admin.get("/_sim/tokens").json()["tokens"]] == [False, False]


# ---- the request record and the state never hold secrets ------------------------------------------


def test_request_record_and_state_mask_every_secret(meta_sim: MetaSim) -> None:
    m, pn = meta_sim, meta_sim.number_id
    token, pin = m.token.get_secret_value(), m.pin().get_secret_value()
    proof = appsecret_proof(token, m.app_secret.get_secret_value())
    other = issue(m, "6000000001")["access_token"]
    debug(m, other)
    graph(m, "POST", f"/{pn}/register", json={**WA, "pin": pin})
    graph(m, "POST", f"/{pn}", json={"pin": "975310"})
    graph(m, "POST", f"/{pn}", data={"pin": "975311"})
    hook = {"override_callback_uri": "https://hooks.example/x", "verify_token": "verify-me-please"}
    graph(m, "POST", f"/{m.waba_id}/subscribed_apps", json=hook)
    graph(m, "GET", f"/{pn}", token=None, params={"access_token": token, "note": token})
    assert token not in graph(m, "GET", f"/{token}").text  # a token pasted where an id goes: not echoed
    secret = m.admin.post("/_sim/app/reset-secret").json()["app_secret"]
    debug(m, token, token=f"{m.app_id}|{secret}", proof=None)
    record, state = m.admin.get("/_sim/requests").text, m.admin.get("/_sim/state").text
    secrets = (token, other, proof, pin, "975310", "975311", "verify-me-please", secret, m.seed.app.secret)
    for value in secrets:
        assert value not in record and value not in state
    entries = m.requests()
    assert entries[0]["query"]["input_token"] == "***" and entries[0]["token_id"] == m.token_id
    assert entries[1]["body"] == {**WA, "pin": "***"}
    assert entries[1]["operation"] == "phone_number.register"


# ---- the masker, by property ---------------------------------------------------------------------


secret_text = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=12, max_size=40)
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=20))


@given(secret_text, st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)), max_leaves=12),
    st.sampled_from(["note", "input_token", "x"]))  # fmt: skip
def test_masker_never_lets_a_known_secret_through(secret: str, noise: Any, key: str) -> None:
    # The noise is not the secret: a number or text that happens to spell it (12 zeros inside a
    # large integer) is not a leak the masker can see.
    assume(secret not in json.dumps(noise))
    params = {key: f"prefix-{secret}-suffix", "nested": {"list": [secret, noise]}, "pin": "123456"}
    masked = Masker([secret, "123456"]).params(params)
    assert secret not in json.dumps(masked) and masked["pin"] == "***"
