"""The doctor's verdicts: pure functions from what was read to a `Check` (pass or fail, and the fix).

Each function takes what its probe in `doctor.py` gathered (answers, or the error a read ended in)
and says whether waguard can rely on that part. Details name ids, paths and URLs, never a secret value.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from waguard.meta.models import AppSubscription, SubscribedApp, TokenInfo

PLAYBOOK_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging", "business_management")
WABA_SCOPES = ("whatsapp_business_management", "whatsapp_business_messaging")
BY_HAND = "runbooks/by-hand.md"
GUIDE = "docs/production.md"


@dataclass(frozen=True)
class Check:
    """One verdict: `fix` is the one line to act on when `ok` is False (empty when it passes)."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def as_json(self) -> dict[str, object]:
        return asdict(self)


def passed(name: str, detail: str) -> Check:
    return Check(name, True, detail)


def failed(name: str, detail: str, fix: str) -> Check:
    return Check(name, False, detail, fix)


# ---- the Meta token (debug_token) ------------------------------------------------------------------


def token_valid(info: TokenInfo | None, problem: str | None, refused: bool, token_path: str) -> Check:
    """`refused`: Graph refused the token itself (code 190) when it was used to call debug_token."""
    name = "meta-token-valid"
    if refused:
        return failed(
            name,
            f"Graph refused the token at {token_path}: {problem}",
            f"issue a new admin system-user token and write it to {token_path} ({GUIDE} step 2)",
        )
    if info is None:
        return failed(
            name,
            f"debug_token could not be read: {problem}",
            f"see the failing check above; else put a working system-user token at {token_path}",
        )
    if not info.is_valid:
        why = (info.model_extra or {}).get("error") or {}
        return failed(
            name,
            f"Meta says the token at {token_path} is not valid ({why.get('message', 'no reason')})",
            f"issue a new admin system-user token and write it to {token_path} ({GUIDE} step 2)",
        )
    return passed(name, f"the token at {token_path} is valid ({info.type or 'type unknown'})")


def token_expiry(info: TokenInfo | None, now: float, margin_days: int, token_path: str) -> Check:
    name = "meta-token-expiry"
    if info is None or not info.is_valid:
        return failed(name, "not checked: the token is not valid", "fix meta-token-valid first")
    if not info.expires_at:
        return passed(name, "the token does not expire (credential-rotation still rotates it by age)")
    days_left = (info.expires_at - now) / 86400
    if days_left < margin_days:
        return failed(
            name,
            f"the token expires in {days_left:.1f} days, within the policy's "
            f"{margin_days}-day margin (runbooks/hygiene.policy.yaml)",
            f"run the credential-rotation deployment now, or write a fresh token to {token_path}",
        )
    return passed(name, f"the token expires in {days_left:.0f} days (margin {margin_days})")


def token_scopes(info: TokenInfo | None, needed: Sequence[str]) -> Check:
    name = "meta-token-scopes"
    if info is None or not info.is_valid:
        return failed(name, "not checked: the token is not valid", "fix meta-token-valid first")
    missing = sorted(set(needed) - set(info.scopes))
    if missing:
        return failed(
            name,
            f"the token lacks {', '.join(missing)}",
            f"issue the system user a token with {', '.join(sorted(needed))} ({GUIDE} step 2)",
        )
    return passed(name, f"the token has {', '.join(sorted(needed))}")


def _covers(info: TokenInfo, scope: str, target: str) -> bool:
    """Whether `scope` reaches `target`: a granular scope with no target ids reaches everything."""
    grants = [g for g in info.granular_scopes if g.scope == scope]
    return not grants or any(not g.target_ids or target in g.target_ids for g in grants)


def token_wabas(info: TokenInfo | None, wabas: Sequence[str], businesses: Sequence[str]) -> Check:
    name = "meta-token-wabas"
    if info is None or not info.is_valid:
        return failed(name, "not checked: the token is not valid", "fix meta-token-valid first")
    missing = [w for w in wabas if not all(_covers(info, s, w) for s in WABA_SCOPES if s in info.scopes)]
    missing += [
        b
        for b in businesses
        if "business_management" in info.scopes and not _covers(info, "business_management", b)
    ]
    if missing:
        return failed(
            name,
            f"the token is not scoped to {', '.join(missing)} (runbooks/businesses.yaml)",
            "assign the system user to those assets with full control, then issue a new token",
        )
    return passed(name, f"the token reaches WABA {', '.join(wabas)}")


def appsecret_proof(problem: str | None, proof_refused: bool, app_secret_path: str) -> Check:
    name = "appsecret-proof"
    if proof_refused:
        return failed(
            name,
            f"Meta refused the appsecret_proof made with the app secret at {app_secret_path}",
            f"write the app's current secret (App Dashboard › Settings › Basic) to {app_secret_path}",
        )
    if problem is not None:
        return failed(
            name, f"not checked: Graph refused the call first ({problem})", "fix meta-token-valid first"
        )
    return passed(name, f"Graph accepted calls signed with the app secret at {app_secret_path}")


# ---- webhook subscriptions -------------------------------------------------------------------------


def subscriptions(
    app_id: str,
    expected: str,
    per_waba: Mapping[str, Sequence[SubscribedApp] | str],
    app_hooks: Sequence[AppSubscription] | str,
) -> Check:
    """`per_waba`: each WABA's subscribed apps, or the error its read ended in; `app_hooks` likewise."""
    name = "webhook-subscriptions"
    problems: list[tuple[str, str]] = []
    for waba, subs in per_waba.items():
        if isinstance(subs, str):
            problems.append(
                (f"WABA {waba}'s subscriptions could not be read ({subs})", "fix the token checks first")
            )
            continue
        mine = next((s for s in subs if s.app_id == app_id), None)
        if mine is None:
            problems.append(
                (
                    f"app {app_id} is not subscribed to WABA {waba}",
                    f'subscribe it: graph POST "{waba}/subscribed_apps" ({GUIDE} step 2)',
                )
            )
        elif mine.override_callback_uri and mine.override_callback_uri.rstrip("/") != expected:
            problems.append(
                (
                    f"WABA {waba}'s override sends webhooks to {mine.override_callback_uri}",
                    f'reset it: graph DELETE then POST "{waba}/subscribed_apps" ({BY_HAND})',
                )
            )
        elif not mine.override_callback_uri:
            callback = _app_callback(app_hooks)
            if callback != expected:
                problems.append(
                    (
                        f"the app's callback is {callback or 'not set'}, not {expected}",
                        f"App Dashboard › WhatsApp › Configuration › Callback URL = {expected}",
                    )
                )
    if problems:
        return failed(name, "; ".join(p for p, _ in problems), problems[0][1])
    return passed(name, f"app {app_id} is subscribed to {', '.join(per_waba)}; webhooks reach {expected}")


def _app_callback(app_hooks: Sequence[AppSubscription] | str) -> str | None:
    if isinstance(app_hooks, str):
        return f"unreadable ({app_hooks})"
    hook = next((h for h in app_hooks if h.object == "whatsapp_business_account"), None)
    return hook.callback_url.rstrip("/") if hook and hook.callback_url else None


def verify_handshake(
    url: str, problem: str | None, status: int | None, echoed: bool, token_path: str
) -> Check:
    name = "webhook-verify-token"
    if problem is not None:
        return failed(
            name,
            f"no handshake with {url}: {problem}",
            "see intake and vault-paths; Meta's 'Verify and save' needs the same",
        )
    if status != 200 or not echoed:
        return failed(
            name,
            f"the intake at {url} refused the verify token from {token_path} (HTTP {status})",
            f"make the intake read {token_path} (its settings) and give Meta that same value",
        )
    return passed(name, f"{url} echoed the challenge for the verify token at {token_path}")


# ---- Slack -----------------------------------------------------------------------------------------


def slack_bot(problem: str | None, members: Mapping[str, bool | str]) -> Check:
    """`members`: per channel, whether the bot is in it, or the error conversations.info ended in."""
    name = "slack-bot"
    if problem is not None:
        return failed(
            name,
            f"auth.test failed: {problem}",
            f"put the Bot User OAuth Token (xoxb-...) at the bot-token path ({GUIDE} step 3)",
        )
    outside = [c for c, m in members.items() if m is not True]
    if outside:
        detail = "; ".join(
            f"{c}: {'bot not in the channel' if m is False else m}"
            for c, m in members.items()
            if m is not True
        )
        return failed(
            name,
            detail,
            f"invite the bot: /invite @waguard in {', '.join(outside)}, and check "
            "WAGUARD_SLACK__CHANNEL / __ESCALATION_CHANNEL are channel ids",
        )
    return passed(name, f"the bot is in {', '.join(members)} and can post there")


def signing_secret(problem: str | None, path: str) -> Check:
    name = "slack-signing-secret"
    if problem is not None:
        return failed(
            name,
            f"the signing secret at {path} cannot be read by waguard-intake ({problem})",
            f"put the app's Signing Secret at {path} ({GUIDE} step 1)",
        )
    return passed(name, f"the signing secret at {path} is set and readable by waguard-intake")


# ---- Vault, Prefect, the intake --------------------------------------------------------------------


def vault_paths(reads: Mapping[str, Mapping[str, str | None]], login_problem: str | None) -> Check:
    """`reads`: per identity, each path or transit key read and its error (None: readable)."""
    name = "vault-paths"
    if login_problem is not None:
        return failed(
            name,
            login_problem,
            "pass --identities DIR holding playbook.role-id and playbook.secret-id "
            f"(and evidence.*, intake.*) as {GUIDE} step 1 makes them",
        )
    bad = [
        f"{path} as waguard-{who} ({err})"
        for who, paths in reads.items()
        for path, err in paths.items()
        if err is not None
    ]
    if bad:
        return failed(
            name,
            "not readable: " + "; ".join(bad),
            "write the missing secrets (runbooks/by-hand.md) or fix the policy: "
            "python -m waguard.vault.identities DIR renders it from these settings",
        )
    count = sum(len(p) for p in reads.values())
    return passed(
        name,
        f"{count} paths and keys readable, each under the role that uses it "
        f"({', '.join('waguard-' + w for w in reads)})",
    )


def deployments(found: Mapping[str, str | None], problem: str | None, api_url: str) -> Check:
    """`found`: per deployment name, Prefect's status for it (READY, NOT_READY) or None when missing."""
    name = "prefect-deployments"
    if problem is not None:
        return failed(
            name,
            f"the Prefect API at {api_url} did not answer ({problem})",
            "start the Prefect server or fix WAGUARD_PREFECT__API_URL",
        )
    missing = [d for d, s in found.items() if s is None]
    idle = [d for d, s in found.items() if s is not None and s != "READY"]
    if missing:
        return failed(
            name,
            f"missing deployments: {', '.join(missing)}",
            "start the launcher (waguard worker --project DIR): it registers prefect.yaml's deployments",
        )
    if idle:
        return failed(
            name,
            f"no launcher or worker has polled {', '.join(idle)} lately (NOT_READY)",
            "start (or restart) waguard worker; check its log for poll errors",
        )
    return passed(name, f"{len(found)} deployments exist and a launcher is serving them")


def intake(url: str, problem: str | None, status: int | None) -> Check:
    name = "intake"
    if problem is not None:
        return failed(
            name,
            f"{url} did not answer ({problem})",
            "start waguard intake (and its proxy); check WAGUARD_INTAKE__PUBLIC_URL / __METRICS_LISTEN",
        )
    if status != 200:
        return failed(
            name,
            f"{url} answered HTTP {status}: not ready",
            "read the body of /readyz: it names what the intake cannot reach",
        )
    return passed(name, f"{url} is ready")
