"""A generated fleet of businesses for the scale benchmark: registry entries, Meta seed and Vault secrets.

Business i (1-based) of a fleet has its own Business Manager, app (with its own secret), admin person,
admin system user (waguard's token there, issued for its app) and `wabas` WABAs, one phone number each.
Its token and app secret live in Vault under `meta/fleet/b{i}/` (under the evidence redaction
prefixes, as the registry requires). The ids are digits in their own ranges (1900…, 2900…, 3900…),
far from the demo business's, so the demo business stays as it is beside the fleet.

`make_fleet` draws the secret values; `registry_entries`, `seed_changes` and `secrets` only describe
them (`runbooks_dir` writes the entries into a copy of the runbooks). The values stay in the bench's
memory and Vault, never in the registry or a log.
"""

from __future__ import annotations

import secrets
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

WA_SCOPES = ["whatsapp_business_management", "whatsapp_business_messaging"]


@dataclass(frozen=True)
class FleetBusiness:
    index: int
    app_secret: str
    token: str
    wabas: tuple[str, ...]

    @property
    def business_id(self) -> str:
        return f"2900{self.index:03d}"

    @property
    def app_id(self) -> str:
        return f"1900{self.index:03d}"

    @property
    def admin_id(self) -> str:  # waguard's system user in this business
        return f"7900{self.index:03d}"

    @property
    def person_id(self) -> str:  # the business's one named admin
        return f"6900{self.index:03d}"

    @property
    def secret_path(self) -> str:
        return f"meta/fleet/b{self.index}/app-secret"

    @property
    def token_path(self) -> str:
        return f"meta/fleet/b{self.index}/system-user-token"

    def number_of(self, waba_id: str) -> str:
        return "4" + waba_id[1:]


@dataclass(frozen=True)
class Fleet:
    businesses: tuple[FleetBusiness, ...]

    def wabas(self) -> list[tuple[FleetBusiness, str]]:
        """Every (business, WABA), WABA-major: consecutive entries are on different businesses."""
        width = max(len(b.wabas) for b in self.businesses)
        return [(b, b.wabas[w]) for w in range(width) for b in self.businesses if w < len(b.wabas)]

    def registry_entries(self) -> list[dict[str, Any]]:
        """businesses.yaml entries (no secret values: Vault paths)."""
        return [{
            "business_id": b.business_id, "app_id": b.app_id,
            "app_secret_path": b.secret_path, "token_path": b.token_path,
            "business_users": {b.person_id: {"name": f"Fleet Admin {b.index}", "role": "ADMIN"}},
            "wabas": [{"waba_id": w, "phone_number_ids": [b.number_of(w)]} for w in b.wabas],
        } for b in self.businesses]  # fmt: skip

    def runbooks_dir(self, runbooks: Path, home: Path) -> Path:
        """`runbooks` copied under `home`, with this fleet appended to its business registry."""
        copy = home / "runbooks"
        shutil.copytree(runbooks, copy)
        registry = yaml.safe_load((copy / "businesses.yaml").read_text())
        registry["businesses"] += self.registry_entries()
        (copy / "businesses.yaml").write_text(yaml.safe_dump(registry, sort_keys=False))
        return copy

    def seed_changes(self) -> dict[str, list[dict[str, Any]]]:
        """What the Meta simulator's seed gains (drills.world's merge format: lists of seed items)."""
        out: dict[str, list[dict[str, Any]]] = {k: [] for k in (
            "other_businesses", "other_apps", "wabas", "phone_numbers", "business_users", "system_users",
            "assigned_users", "subscribed_apps", "tokens")}  # fmt: skip
        for b in self.businesses:
            name = f"Fleet Business {b.index}"
            out["other_businesses"].append({"id": b.business_id, "name": name})
            out["other_apps"].append({"id": b.app_id, "name": f"{name} Bot", "secret": b.app_secret})
            out["business_users"].append({"id": b.person_id, "name": f"Fleet Admin {b.index}",
                                          "role": "ADMIN", "email": f"admin@b{b.index}.fleet.example",
                                          "business_id": b.business_id})
            out["system_users"].append({"id": b.admin_id, "name": f"waguard-b{b.index}", "role": "ADMIN",
                                        "business_id": b.business_id})
            granular = [{"scope": s, "target_ids": list(b.wabas)} for s in WA_SCOPES]
            granular.append({"scope": "business_management", "target_ids": [b.business_id]})
            out["tokens"].append({"id": f"tok-fleet-{b.index}", "value": b.token, "user_id": b.admin_id,
                                  "app_id": b.app_id, "scopes": [*WA_SCOPES, "business_management"],
                                  "granular_scopes": granular})
            for w in b.wabas:
                out["wabas"].append({"id": w, "name": f"{name} WABA {w[-2:]}", "business_id": b.business_id})
                out["phone_numbers"].append({"id": b.number_of(w), "waba_id": w, "verified_name": name,
                                             "display_phone_number": f"+1 555-{w[-5:-2]}-{w[-2:]}00"})
                out["assigned_users"].append({"waba_id": w, "user_id": b.admin_id, "tasks": ["MANAGE"]})
                out["subscribed_apps"].append({"waba_id": w, "app_id": b.app_id, "app_name": f"{name} Bot"})
        return out

    def secrets(self) -> dict[str, str]:
        """Vault path -> value, for each business's app secret and token."""
        out = {}
        for b in self.businesses:
            out[b.secret_path] = b.app_secret
            out[b.token_path] = b.token
        return out


def make_fleet(businesses: int, wabas_per_business: int) -> Fleet:
    """`businesses` businesses of `wabas_per_business` WABAs each, with fresh random secrets."""
    if not 1 <= businesses <= 999 or not 1 <= wabas_per_business <= 99:
        raise ValueError("a fleet has 1-999 businesses of 1-99 WABAs each")
    return Fleet(tuple(
        FleetBusiness(i, secrets.token_hex(16), "EAAG" + secrets.token_urlsafe(48).replace("-", "x"),
                      tuple(f"3900{i:03d}{w:02d}" for w in range(1, wabas_per_business + 1)))
        for i in range(1, businesses + 1)))  # fmt: skip


def phishing_template(template_id: str, waba_id: str, name: str) -> dict[str, Any]:
    """A phishing-looking APPROVED template (a seed item) for one incident."""
    return {"id": template_id, "waba_id": waba_id, "name": name, "language": "en_US", "status": "APPROVED",
            "category": "MARKETING",
            "components": [{"type": "BODY", "text": "Your account is suspended: verify at https://evil.example"}]}
