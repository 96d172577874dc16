"""What an approval covers: the destructive actions a run plans, each a kind and a target.

A flow lists its planned actions before it asks (`Scope`); the approval request shows that list and
the "decided" timeline entry stores it. A later run of the same incident may act under that decision
only if everything it now plans was in an approved list (`covered_by`); anything new is asked again.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

ActionKind = Literal["delete_template", "deregister", "remove_unknown_users", "reset_overrides",
                     "set_pin", "revoke_token", "issue_token", "reset_app_secret"]


@dataclass(frozen=True, order=True)
class Action:
    """One destructive action: what kind, on what (an object id, a Vault path; never a secret)."""

    kind: ActionKind
    target: str

    def line(self) -> str:
        return f"{self.kind.replace('_', ' ')}: {self.target}"

    def as_list(self) -> list[str]:
        return [self.kind, self.target]


@dataclass(frozen=True)
class Scope:
    """A plan to approve: the summary people read, the typed actions, and the flow's own context
    (e.g. the templates it found), handed back after approval."""

    summary: str
    actions: tuple[Action, ...]
    context: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "actions", tuple(sorted(set(self.actions))))

    def lines(self) -> tuple[str, ...]:
        return tuple(a.line() for a in self.actions)

    def stored(self) -> list[list[str]]:
        """The form the timeline keeps (JSON)."""
        return [a.as_list() for a in self.actions]


def actions_from(stored: Iterable[Iterable[str]] | None) -> frozenset[Action]:
    """The actions a timeline entry stored (see `Scope.stored`); malformed entries are dropped."""
    out = set()
    for item in stored or ():
        pair = list(item)
        if len(pair) == 2 and all(isinstance(p, str) for p in pair):
            out.add(Action(pair[0], pair[1]))  # type: ignore[arg-type]
    return frozenset(out)


def covered_by(planned: Iterable[Action], approved: Iterable[Action]) -> bool:
    """True when every planned action was approved (an empty plan is covered by any approval)."""
    return set(planned) <= set(approved)
