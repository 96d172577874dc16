# waguard-intake: the intake service verifies deliveries; it writes nothing.
# Rendered by waguard.vault.identities from the settings; do not edit by hand.

# Meta webhook signatures: the app secret (current and the previous version inside its window).
path "secret/data/meta/app-secret" { capabilities = ["read"] }
path "secret/data/waguard/app-secret-rotation" { capabilities = ["read"] }

# A GitHub alert's leaked value is matched (keyed hash) against waguard's token.
path "secret/data/meta/system-user-token" { capabilities = ["read"] }

# The other senders' secrets and the Slack request-signing secret.
path "secret/data/intake/alertmanager-token" { capabilities = ["read"] }
path "secret/data/intake/github-webhook-secret" { capabilities = ["read"] }
path "secret/data/intake/grafana-hmac-secret" { capabilities = ["read"] }
path "secret/data/intake/meta-verify-token" { capabilities = ["read"] }
path "secret/data/slack/signing-secret" { capabilities = ["read"] }
