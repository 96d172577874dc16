# waguard-playbook: the playbook runs (launcher children, served runs).
# Rendered by waguard.vault.identities from the settings; do not edit by hand.

# Tokens and PINs the runs read and rotate live beside waguard's own token (flow parameters name paths under meta/).
path "secret/data/meta/*" { capabilities = ["create", "read", "update"] }
path "secret/metadata/meta/*" { capabilities = ["read"] }

# The app secret: read, every version (the old one proves rotation). A person writes the new one, never a run.
path "secret/data/meta/app-secret" { capabilities = ["read"] }
path "secret/metadata/meta/app-secret" { capabilities = ["read"] }

# Slack: the bot token posts the incident thread.
path "secret/data/slack/bot-token" { capabilities = ["read"] }

# The app-secret rotation window the intake honours (written by open-rotation-window).
path "secret/data/waguard/app-secret-rotation" { capabilities = ["create", "update"] }

# The posture audit reports critical findings to the intake as an Alertmanager sender.
path "secret/data/intake/alertmanager-token" { capabilities = ["read"] }
