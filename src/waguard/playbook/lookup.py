"""Which registered business and WABA an alert is about (pure: a `Registry` in, answers out).

The intake asks with what a delivery carries: a WABA id (a Meta webhook's `entry[].id`, an alert's
`waba_id` label), an app id, or phone-number ids. The registry's validation guarantees each id is
listed once, so every lookup has at most one answer; `resolve` says why when there is none.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from waguard.playbook.accounts import BusinessEntry, Registry, WabaEntry


@dataclass(frozen=True)
class Found:
    business: BusinessEntry
    waba: WabaEntry


@dataclass(frozen=True)
class Unresolved:
    """Why no single registered WABA fits (plain words: it reaches the audit log and the answer)."""

    reason: str


class RegistryIndex:
    """The registry indexed by WABA, app and phone-number id (built once per registry)."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self._wabas: dict[str, Found] = {}
        self._apps: dict[str, BusinessEntry] = {}
        self._numbers: dict[str, Found] = {}
        for business in registry.businesses:
            self._apps[business.app_id] = business
            for waba in business.wabas:
                found = Found(business, waba)
                self._wabas[waba.waba_id] = found
                for number in [*waba.phone_number_ids, *waba.display_names]:
                    self._numbers[number] = found

    def by_waba(self, waba_id: str) -> Found | None:
        return self._wabas.get(waba_id)

    def by_app(self, app_id: str) -> BusinessEntry | None:
        return self._apps.get(app_id)

    def by_phone_number(self, phone_number_id: str) -> Found | None:
        return self._numbers.get(phone_number_id)

    def only_waba(self) -> Found | None:
        """The registry's WABA when it lists exactly one (the single-business settings), else None."""
        return next(iter(self._wabas.values())) if len(self._wabas) == 1 else None

    def resolve(self, *, waba_id: str | None = None, app_id: str | None = None,
                phone_number_ids: Iterable[str] = ()) -> Found | Unresolved:
        """The one registered WABA that everything given agrees on.

        A WABA id wins if given; phone numbers must then belong to it, and the app must be its
        business's. Without one, the phone numbers' WABA; without those, the app's business's only
        WABA; with nothing at all, the registry's only WABA.
        """
        candidates: list[tuple[str, Found]] = []
        if waba_id:
            found = self.by_waba(waba_id)
            if found is None:
                return Unresolved(f"WABA {waba_id} is not in the business registry")
            candidates.append((f"WABA {waba_id}", found))
        for number in dict.fromkeys(phone_number_ids):
            found = self.by_phone_number(number)
            if found is None:
                return Unresolved(f"phone number {number} is not in the business registry")
            candidates.append((f"phone number {number}", found))
        if candidates:
            first_what, first = candidates[0]
            for what, found in candidates[1:]:
                if found.waba.waba_id != first.waba.waba_id:
                    other = "" if first_what.startswith("WABA") else f" ({first_what}'s)"
                    return Unresolved(f"{what} belongs to WABA {found.waba.waba_id}, not WABA "
                                      f"{first.waba.waba_id}{other}")
            if app_id and app_id != first.business.app_id:
                return Unresolved(f"{first_what} belongs to app {first.business.app_id}, not app {app_id}")
            return first
        if app_id:
            business = self.by_app(app_id)
            if business is None:
                return Unresolved(f"app {app_id} is not in the business registry")
            if len(business.wabas) != 1:
                return Unresolved(f"app {app_id}'s business has {len(business.wabas)} WABAs and the "
                                  "alert names none of them")
            return Found(business, business.wabas[0])
        only = self.only_waba()
        return only if only is not None else Unresolved(
            "the alert names no WABA, app or phone number, and the registry lists several WABAs")
