"""The Meta Graph API simulator: a stateful stand-in for graph.facebook.com for tests and drills.

    from waguard.meta.simulator import create_app, demo_seed
    app = create_app(demo_seed(app_secret=..., system_user_token=...))

Modules: `seed` (the Seed model and the demo business), `state` (live state), `rules` (Meta's rules
as pure functions), `envelope` (error envelopes and statuses), `graph` (routing and checks),
`phone` / `templates` / `access` / `nodes` (the operations), `admin` (/_sim/ API), `faults`,
`record` (the masked request record), `webhooks` (payload builders, signing, delivery).
"""

from waguard.meta.simulator.app import create_app
from waguard.meta.simulator.seed import Seed, demo_seed, load_seed
from waguard.meta.simulator.state import SimState
from waguard.meta.simulator.webhooks import account_update, message_template_status_update, security

__all__ = [
    "Seed",
    "SimState",
    "account_update",
    "create_app",
    "demo_seed",
    "load_seed",
    "message_template_status_update",
    "security",
]
