"""deploy/slack/manifest.yaml grants exactly the bot scopes the Slack client's API methods need, and
sends clicks to the intake's interactivity route."""

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = ROOT / "deploy" / "slack" / "manifest.yaml"

# Slack's documented bot scopes per Web API method (docs.slack.dev/reference/methods/<method>).
SCOPES = {
    "auth.test": set(),
    "chat.postMessage": {"chat:write"},
    "chat.update": {"chat:write"},
    # public and private channels; waguard posts only in channels, never DMs
    "conversations.replies": {"channels:history", "groups:history"},
    "conversations.info": {"channels:read", "groups:read"},  # waguard doctor: is the bot in the channel
}


def called_methods() -> set[str]:
    """Every `self._call("<method>", ...)` in the Slack client."""
    tree = ast.parse((ROOT / "src" / "waguard" / "slack" / "client.py").read_text())
    return {n.args[0].value for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "_call"
            and n.args and isinstance(n.args[0], ast.Constant)}


def test_bot_scopes_are_exactly_what_the_client_calls() -> None:
    methods = called_methods()
    assert methods, "no Slack API call found: the client changed shape"
    unknown = methods - SCOPES.keys()
    assert not unknown, f"add the scopes of {unknown} to SCOPES and to the manifest"
    needed = set().union(*(SCOPES[m] for m in methods))
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert set(manifest["oauth_config"]["scopes"]["bot"]) == needed
    assert "user" not in manifest["oauth_config"]["scopes"]


def test_interactivity_goes_to_the_intake_route() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text())
    interactivity = manifest["settings"]["interactivity"]
    assert interactivity["is_enabled"] is True
    assert manifest["settings"]["socket_mode_enabled"] is False
    url = interactivity["request_url"]
    assert url.startswith("https://")
    routes = (ROOT / "src" / "waguard" / "intake").rglob("*.py")
    declared = {m for f in routes for m in re.findall(r'Route\("(/slack/[a-z/]+)"', f.read_text())}
    assert declared and url.endswith(tuple(declared)), (url, declared)
