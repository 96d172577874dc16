"""Runbook policy: the shipped files validate, broken ones are refused, votes are tallied by the rules."""

from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

from waguard.errors import ConfigError
from waguard.playbook.policy import PLAYBOOKS, PlaybookPolicy, Verdict, Vote, load_policy, tally

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((ROOT / "tests/samples/runbooks_invalid").glob("*.yaml"))


@pytest.mark.parametrize("playbook", PLAYBOOKS)
def test_shipped_policies_validate(playbook: str) -> None:
    policy = load_policy(ROOT / "runbooks", playbook)  # type: ignore[arg-type]
    assert policy.playbook == playbook


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_broken_policies_are_refused(path: Path) -> None:
    with pytest.raises(ValidationError):
        PlaybookPolicy.model_validate(yaml.safe_load(path.read_text()))


def test_load_policy_names_the_file_and_key(tmp_path: Path) -> None:
    (tmp_path / "leaked-secret.policy.yaml").write_text("playbook: leaked_secret\napprovers: [U1]\nqourum: 1\n")
    with pytest.raises(ConfigError) as err:
        load_policy(tmp_path, "leaked_secret")
    assert "leaked-secret.policy.yaml" in str(err.value) and "qourum" in str(err.value)


POLICY = PlaybookPolicy(playbook="leaked_secret", approvers=["U1", "U2", "U3"], quorum=2)


@pytest.mark.parametrize(
    ("votes", "initiator", "verdict", "refused"),
    [
        ([], None, Verdict.PENDING, 0),
        ([Vote("U1", True)], None, Verdict.PENDING, 0),
        ([Vote("U1", True), Vote("U2", True)], None, Verdict.APPROVED, 0),
        ([Vote("U1", True), Vote("U1", True)], None, Verdict.PENDING, 1),        # same person twice
        ([Vote("U1", True), Vote("U9", True)], None, Verdict.PENDING, 1),        # not an approver
        ([Vote("U1", True), Vote("U2", True)], "U2", Verdict.PENDING, 1),        # self-approval
        ([Vote("U1", True), Vote("U2", False)], None, Verdict.DENIED, 0),        # a deny decides
        ([Vote("U9", False), Vote("U1", True)], None, Verdict.PENDING, 1),       # a stranger cannot deny
        ([Vote("U1", True), Vote("U1", False)], None, Verdict.PENDING, 1),       # no changing one's mind
    ],
)
def test_tally(votes: list[Vote], initiator: str | None, verdict: Verdict, refused: int) -> None:
    result = tally(votes, POLICY, initiator)
    assert result.verdict is verdict
    assert len(result.refused) == refused
