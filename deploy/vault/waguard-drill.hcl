# waguard-drill: the drills' stand-in responder, world reset, verifier and canary scan (the local stack and game days; a production deployment has no drill role).
# Rendered by waguard.vault.identities from the settings; do not edit by hand.

# Reads every secret the drill checks or scans for.
path "secret/data/meta/*" { capabilities = ["read"] }
path "secret/metadata/meta/*" { capabilities = ["read", "list"] }
path "secret/data/slack/*" { capabilities = ["read"] }
path "secret/metadata/slack/*" { capabilities = ["read", "list"] }
path "secret/data/intake/*" { capabilities = ["read"] }
path "secret/metadata/intake/*" { capabilities = ["read", "list"] }
path "secret/data/waguard/*" { capabilities = ["read"] }
path "secret/metadata/waguard/*" { capabilities = ["read", "list"] }

# What the people and Meta it stands in for write: the new app secret, the consumers' token, and the numbers' PIN each scenario's world starts from.
path "secret/data/meta/app-secret" { capabilities = ["create", "read", "update"] }
path "secret/data/meta/messaging-token" { capabilities = ["create", "read", "update"] }
path "secret/data/meta/two-step-pin" { capabilities = ["create", "read", "update"] }
