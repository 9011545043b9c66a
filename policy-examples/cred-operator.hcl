# Vault ACL policy `cred-operator`: creates, restricts and deletes credentials (and, later, rotates
# them) but cannot read a password: no `read` on the data path (docs/credentials.md "Access control").
#   vault policy write cred-operator cred-operator.hcl
#
# What each `vks cred` act sends (docs/internals/cred.md):
#   create    GET metadata (must be absent), LIST + GET metadata of every credential (the username
#             must be unique), POST data with cas 0 (create), POST metadata (update)
#   list, due LIST metadata (recursively), GET metadata of each
#   show      GET metadata; no fingerprint: sys/capabilities-self (default policy) says it may not read
#   restrict  GET metadata, PATCH data with cas (patch: bumps the version without reading the
#             password), POST metadata (update)
#   delete    GET metadata, DELETE metadata (every version)
#   rotation  (later) POST data with cas (update: a new version with the pending password),
#             GET/POST metadata; never a read of data
# The operator still writes passwords: it can replace one, but never learn one. Vault's ACL has no
# "deny read but allow write" within one rule, and none is needed: capabilities not listed are denied.
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/data/smtp-auth/*" {
  capabilities = ["create", "update", "patch"]
}

path "secret/metadata/smtp-auth/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}
