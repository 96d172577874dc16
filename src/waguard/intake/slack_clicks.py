"""POST /slack/interactions: the HTTP side of approval clicks (the checks live in slack_actions.py).

Answers: 200 vote accepted (or stored for a gate not open yet); 401 forged or stale signature;
409 a repeated request, a second click by the same person on the same gate, a stale nonce, a
closed step, or a run that has ended or is being cancelled; 403 not an approver or self-approval;
404 no such run, or not a playbook's run; 400 a malformed payload; 503 Prefect or Vault
unreachable. Every one is audited and counted, and every refusal carries an ephemeral `text` for
the person who clicked.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from waguard.intake.keys import SecretsUnavailable
from waguard.intake.slack_actions import BadClick, Click, RunDirectory, all_approvers, parse_click, refusal
from waguard.intake.sources import Inbound, Problem
from waguard.intake.verify import Rejected, verify_slack
from waguard.playbook.approval import StoredVote
from waguard.playbook.policy import Playbook, PlaybookPolicy, identity

if TYPE_CHECKING:
    from waguard.intake.app import IntakeService

log = logging.getLogger(__name__)
FORM_TYPES = ("application/x-www-form-urlencoded",)
REQUEST_TTL_S = 600  # longer than the 300 s signature window either way
_SUBMIT_ANSWERS = {
    "accepted": (200, "vote-accepted"),
    "no-such-step": (200, "vote-stored"),
    "stale": (409, "refused-stale"),
    "closed": (409, "refused-closed"),
}
_REFUSAL_ANSWERS = {  # reason -> (status, outcome, error code)
    "not-approver": (403, "refused-not-approver", "not_approver"),
    "self-approval": (403, "refused-self-approval", "self_approval"),
    "no-such-run": (404, "refused-no-such-run", "no_such_run"),
    "not-a-playbook": (404, "refused-not-a-playbook", "not_a_playbook"),
    "closed": (409, "refused-closed", "closed_run"),
}


class SlackClicks:
    """Handles Slack interactivity requests for one intake service."""

    def __init__(self, service: IntakeService, runs: RunDirectory,
                 policies: dict[Playbook, PlaybookPolicy]) -> None:
        self.service = service
        self.runs = runs
        self.policies = policies
        self.approvers = all_approvers(policies)

    def _answer(self, d: Inbound | None, status: int, outcome: str, click: Click | None,
                code: str | None = None, message: str | None = None) -> JSONResponse:
        decision = click.decision if click else "unknown"
        self.service.metrics.approvals.labels(decision, outcome).inc()
        body: dict[str, Any] = {"outcome": outcome}
        if code:
            # Slack shows `text` to the person who clicked only; the message itself stays as it is.
            body |= {"error": code, "message": message or code, "response_type": "ephemeral",
                     "replace_original": False, "text": f"Not counted: {message or code}."}
        return self.service.answer(
            "slack", d, status, outcome, body, run_id=str(click.run_id) if click else None,
            actor=click.user if click else None, step=click.step if click else None,
            decision=click.decision if click else None, note=code)

    async def handle(self, request: Request) -> Response:
        """Verify, parse and check a click, then pass the vote to the run."""
        svc = self.service
        d: Inbound | None = None
        click: Click | None = None
        try:
            d = await svc.receive(request, "slack", FORM_TYPES)
            secret = await svc.secrets.get(svc.settings.slack.signing_secret_path)
            ts, sig = d.headers.get("x-slack-request-timestamp"), d.headers.get("x-slack-signature")
            try:
                verify_slack(secret.value if secret else None, d.body, ts, sig, now=svc.clock())
            except Rejected as err:
                raise svc.rejected(d, err, request) from None
            d.verification = "ok"
            # A signed request replayed inside the window: same timestamp and signature.
            if not svc.store.remember(f"slack:request:{ts}:{sig}", now=svc.clock(), ttl_s=REQUEST_TTL_S):
                raise Problem(409, "repeated_request", "this request was already received",
                              "refused-repeated")
            try:
                click = parse_click(d.body)
            except BadClick as err:
                raise Problem(400, "invalid_payload", str(err), "rejected-input") from None
            d.delivery_id = click.action_ts
            if identity(click.user) not in self.approvers:
                # Refused before Prefect is asked anything about the run.
                status, outcome, _ = _REFUSAL_ANSWERS["not-approver"]
                log.warning("intake: approval click from %s, who approves nothing", click.user)
                return self._answer(d, status, outcome, click, "not_an_approver", "you are not an approver")
            try:
                info = await self.runs.describe(click.run_id)
            except Exception as err:  # Prefect unreachable: the click can be repeated
                log.warning("intake: could not read run %s (%s)", click.run_id, type(err).__name__)
                raise Problem(503, "unavailable", "the run cannot be read now; try again",
                              "unavailable") from None
            reason = refusal(click, info, self.policies)
            if reason is not None:
                status, outcome, code = _REFUSAL_ANSWERS[reason]
                log.warning("intake: approval click refused (%s) by %s", reason, click.user)
                message: str = reason
                if reason == "closed" and info is not None:
                    message = f"this approval is closed: the run is {str(info.state).lower()}"
                return self._answer(d, status, outcome, click, code, message)
            vote_key = f"slack:vote:{click.run_id}:{click.step}:{click.nonce}:{click.user}"
            if not svc.store.remember(vote_key, now=svc.clock(), ttl_s=svc.settings.intake.replay_ttl_s):
                return self._answer(d, 409, "refused-repeated", click, "already_voted",
                                    "you already decided on this step")
            try:
                result = await self.runs.submit(click.run_id, click.step, StoredVote(
                    approver=click.user, decision=click.decision, nonce=click.nonce))
            except Exception as err:  # Prefect unreachable: let the person click again
                svc.store.forget(vote_key)
                log.warning("intake: could not deliver a vote to run %s (%s)", click.run_id,
                            type(err).__name__)
                raise Problem(503, "unavailable", "the run cannot be reached now; try again",
                              "unavailable") from None
            status, outcome = _SUBMIT_ANSWERS[result]
            failed = None if status == 200 else f"{result}_step"
            return self._answer(d, status, outcome, click, failed, None if status == 200 else result)
        except Problem as p:
            return self._answer(d, p.status, p.outcome, click, p.code, str(p))
        except SecretsUnavailable:
            return self._answer(d, 503, "unavailable", click, "unavailable", "retry later")
