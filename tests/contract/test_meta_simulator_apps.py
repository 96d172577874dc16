"""The Meta simulator with a second business's app, over real HTTP: each token's appsecret_proof is keyed
with the secret of the app it was issued for, a system-user token is issued for the app named by
`business_app`, and one app's secret reset leaves the other's working."""

from __future__ import annotations

import secrets

from tests.fixtures.meta import MetaSim
from tests.support.meta_sim import code, debug, graph
from waguard.meta.simulator.rules import appsecret_proof
from waguard.meta.simulator.seed import AppSeed, TokenSeed

B_APP = "1000000002"


def with_app_b(m: MetaSim) -> tuple[str, str]:
    """Reseed with app B (its own secret) and a token of the admin system user issued for B."""
    b_secret, b_token = secrets.token_hex(16), "EAAG" + secrets.token_urlsafe(40)
    seed = m.seed.model_copy(update={
        "other_apps": [AppSeed(id=B_APP, name="Brand B", secret=b_secret)],
        "tokens": [*m.seed.tokens, TokenSeed(id="tok-b", value=b_token, user_id=m.system_user_id,
                                             app_id=B_APP, scopes=["whatsapp_business_management",
                                                                     "business_management"])]})
    m.admin.post("/_sim/seed", json=seed.model_dump(mode="json")).raise_for_status()
    return b_secret, b_token


def test_a_tokens_proof_is_keyed_with_its_own_apps_secret(meta_sim: MetaSim) -> None:
    m, path = meta_sim, f"/{meta_sim.waba_id}"
    b_secret, b_token = with_app_b(m)
    assert graph(m, "GET", path, token=b_token, proof=appsecret_proof(b_token, b_secret)).status_code == 200
    # A's secret over B's token (and B's over A's) is an invalid proof.
    assert code(graph(m, "GET", path, token=b_token)) == 100
    a_token = m.token.get_secret_value()
    assert code(graph(m, "GET", path, token=a_token, proof=appsecret_proof(a_token, b_secret))) == 100
    assert debug(m, b_token).json()["data"]["app_id"] == B_APP


def test_a_token_is_issued_for_the_app_named_and_each_app_resets_alone(meta_sim: MetaSim) -> None:
    m = meta_sim
    b_secret, b_token = with_app_b(m)
    proof = appsecret_proof(b_token, b_secret)
    made = graph(m, "POST", f"/{m.system_user_id}/access_tokens", token=b_token, proof=proof,
                 params={"business_app": B_APP, "scope": "whatsapp_business_management"})
    assert made.status_code == 200, made.text
    assert debug(m, made.json()["access_token"]).json()["data"]["app_id"] == B_APP
    unknown = graph(m, "POST", f"/{m.system_user_id}/access_tokens", token=b_token, proof=proof,
                    params={"business_app": "1000000099", "scope": "whatsapp_business_management"})
    assert code(unknown) == 100
    new_b = m.admin.post("/_sim/app/reset-secret", params={"app_id": B_APP}).json()["app_secret"]
    assert code(graph(m, "GET", f"/{m.waba_id}", token=b_token, proof=proof)) == 100  # B's old secret
    assert graph(m, "GET", f"/{m.waba_id}", token=b_token,
                 proof=appsecret_proof(b_token, new_b)).status_code == 200
    assert graph(m, "GET", f"/{m.waba_id}").status_code == 200  # A's secret still works
    assert m.admin.post("/_sim/app/reset-secret", params={"app_id": "1000000099"}).status_code == 404
    # No secret of either app is in the request record.
    record = str(m.requests())
    assert b_secret not in record and new_b not in record and b_token not in record
