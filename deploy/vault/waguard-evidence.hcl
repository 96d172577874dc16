# waguard-evidence: evidence bundles, redacted and signed (a second login inside each run).
# Rendered by waguard.vault.identities from the settings; do not edit by hand.

# Redaction: every value (all versions) under the secret prefixes, so none can reach a bundle.
path "secret/data/meta/*" { capabilities = ["read"] }
path "secret/metadata/meta/*" { capabilities = ["read", "list"] }
path "secret/data/slack/*" { capabilities = ["read"] }
path "secret/metadata/slack/*" { capabilities = ["read", "list"] }
path "secret/data/intake/*" { capabilities = ["read"] }
path "secret/metadata/intake/*" { capabilities = ["read", "list"] }
path "secret/data/waguard/*" { capabilities = ["read"] }
path "secret/metadata/waguard/*" { capabilities = ["read", "list"] }

# The redaction key: created once on first use (cas=0), never overwritten.
path "secret/data/waguard/redaction-key" { capabilities = ["create", "read"] }
path "secret/metadata/waguard/redaction-key" { capabilities = ["read"] }

# Signing (ed25519; the key is created and rotated by an admin, not here) and its public keys.
path "transit/sign/waguard-evidence" { capabilities = ["update"] }
path "transit/keys/waguard-evidence" { capabilities = ["read"] }

# Data keys that encrypt bundles (evidence.encrypt); opening one is an operator's job.
path "transit/datakey/plaintext/waguard-evidence-enc" { capabilities = ["update"] }
