"""Which registered business a delivery is about, and whether the app that signed it may speak for it.

Meta signs each webhook with the secret of the app the delivery is for, and the payload names the WABA
(`entry[].id`). The intake checks the signature against every registered app's secret first (the raw
bytes, constant time, before any parsing) and remembers which app's matched; once parsed, every entry
must name a WABA of that app's business. A WABA registered to another app is a forgery or a leaked
secret of the wrong app: refused (401). A WABA the registry does not list is recorded and starts
nothing: refusing it would make Meta retry the delivery for days.

Alerts (Alertmanager, Grafana) name the business by their `waba_id`, `app_id` or `phone_number_id`
labels; the run's parameters then carry the one WABA they resolve to (`waguard.playbook.lookup`).
"""

from __future__ import annotations

from dataclasses import dataclass

from waguard.intake.detect import MetaDelivery
from waguard.intake.routing import AlertNotification, AlertRouting, Route, Start, playbook_named
from waguard.intake.verify import Rejected
from waguard.playbook.accounts import app_secret_path, load_registry, rotation_window_path
from waguard.playbook.lookup import Found, RegistryIndex, Unresolved
from waguard.settings import Settings

# The labels an alert names its business by (beside the routing policy's own label -> parameter map).
WABA_LABEL, APP_LABEL, NUMBER_LABEL = "waba_id", "app_id", "phone_number_id"


@dataclass(frozen=True)
class AppKeys:
    """One registered app: where its secret, the secret's rotation window and waguard's token are."""

    app_id: str
    secret_path: str
    window_path: str
    token_path: str
    first_waba: str


@dataclass(frozen=True)
class Businesses:
    """The business registry as the intake uses it (read once, at start, like the routing policy)."""

    index: RegistryIndex
    apps: tuple[AppKeys, ...]

    @classmethod
    def load(cls, settings: Settings) -> Businesses:
        """Raises ConfigError naming the registry file and key when it is invalid."""
        registry = load_registry(settings.runbooks_dir, settings)
        apps = []
        for b in registry.businesses:
            path = app_secret_path(b, settings)
            apps.append(AppKeys(b.app_id, path, rotation_window_path(settings, b.app_id, path),
                                b.token_path or settings.meta.token_path, b.wabas[0].waba_id))
        return cls(RegistryIndex(registry), tuple(apps))

    def wabas(self) -> list[str]:
        """Every registered WABA (the intake's `waguard_known_waba_info`)."""
        return [w.waba_id for b in self.index.registry.businesses for w in b.wabas]

    # -- Meta --------------------------------------------------------------------------------------

    def meta_route(self, route: Route, delivery: MetaDelivery, app_id: str) -> Route:
        """Keep the starts of WABAs the signing app's business owns.

        Raises:
            Rejected("wrong-app"): an entry names a WABA registered to another app.
        """
        strangers: list[str] = []
        for entry in delivery.entry:
            found = self.index.by_waba(entry.id)
            if found is None:
                if entry.id.isdigit() and len(entry.id) <= 32 and entry.id not in strangers:
                    strangers.append(entry.id)  # digits only: safe to name in the audit log
                continue
            if found.business.app_id != app_id:
                raise Rejected("wrong-app", f"the delivery is signed with app {app_id}'s secret, but WABA "
                               f"{entry.id} belongs to app {found.business.app_id}")
        if not strangers:
            return route
        starts = tuple(s for s in route.starts if s.parameters.get("waba_id") not in strangers)
        notes = tuple(f"WABA {w} is not in the business registry; recorded, not acted on"
                      for w in strangers[:5])
        return Route(starts=starts, closes=route.closes, notes=route.notes + notes)

    # -- Alertmanager and Grafana ------------------------------------------------------------------

    def alert_route(self, route: Route, note: AlertNotification, cfg: AlertRouting) -> Route:
        """Give each start the WABA its alerts' labels resolve to; one that resolves to none (or to
        several) starts nothing, with a note saying why."""
        starts: list[Start] = []
        notes = list(route.notes)
        for start in route.starts:
            alerts = [a for a in note.alerts if a.status == "firing"
                      and playbook_named(a.labels.get(cfg.playbook_label)) == start.playbook]
            given = start.parameters.get("waba_id")
            wabas = {a.labels[WABA_LABEL] for a in alerts if a.labels.get(WABA_LABEL)}
            wabas |= {given} if given else set()
            apps = {a.labels[APP_LABEL] for a in alerts if a.labels.get(APP_LABEL)}
            numbers = [a.labels[NUMBER_LABEL] for a in alerts if a.labels.get(NUMBER_LABEL)]
            numbers += [n for n in start.parameters.get("phone_number_ids") or () if isinstance(n, str)]
            if len(wabas) > 1 or len(apps) > 1:
                notes.append(f"{start.playbook}: the group's alerts name several WABAs or apps; group "
                             "alerts by waba_id; not started")
                continue
            waba = next(iter(wabas), None)
            if waba is not None and self.index.by_waba(waba) is None:
                # Not ours: started as named, and the run refuses it before touching anything (its
                # account lookup), so what was asked stays visible as a failed run.
                starts.append(start)
                continue
            found = self.index.resolve(waba_id=waba, app_id=next(iter(apps), None), phone_number_ids=numbers)
            if isinstance(found, Unresolved):
                notes.append(f"{start.playbook}: {found.reason}; not started")
                continue
            starts.append(_on(start, found))
        return Route(starts=tuple(starts), closes=route.closes, notes=tuple(notes))

    # -- GitHub ------------------------------------------------------------------------------------

    def github_route(self, route: Route, matched_waba: str | None) -> Route:
        """A leaked credential's run acts on the WABA whose credential it is; without the value, on the
        registry's only business (its first WABA), else it starts nothing."""
        if not route.starts:
            return route
        if matched_waba is not None:
            found = self.index.by_waba(matched_waba)
        else:
            businesses = self.index.registry.businesses
            found = Found(businesses[0], businesses[0].wabas[0]) if len(businesses) == 1 else None
        if found is None:
            return Route(closes=route.closes, notes=route.notes + (
                "the alert does not say which business's credential leaked (several are registered); "
                "not started",))
        return Route(tuple(_on(s, found) for s in route.starts), route.closes, route.notes)


def _on(start: Start, found: Found) -> Start:
    # Built directly: dataclasses.replace reads the fields' definitions on every call.
    return Start(start.playbook, start.key, start.severity, start.source,
                 {**start.parameters, "waba_id": found.waba.waba_id})
