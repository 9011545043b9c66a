# Vault ACL policy `auditor`: metadata only — which credentials exist, their restrictions, state,
# dates and version history (`vks cred list`, `show` without fingerprint, `due`); never a password
# (docs/credentials.md "Access control").
#   vault policy write auditor auditor.hcl
# The audit trail itself is a file, not a Vault path: grant it with file permissions (the trail's
# group, e.g. `vks-audit`, read-only; docs/credentials.md) and verify it with `vks audit verify`.
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/metadata/smtp-auth/*" {
  capabilities = ["read", "list"]
}
