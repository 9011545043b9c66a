# Vault ACL policy `cred-operator`: creates, restricts, rotates and deletes credentials but cannot
# read a stored password: no `read` on the credential's data path (docs/credentials.md "Access control").
#   vault policy write cred-operator cred-operator.hcl
#
# What each `vks cred` act sends (docs/internals/cred.md):
#   create    GET metadata (must be absent), LIST + GET metadata of every credential (the username
#             must be unique: the early message), POST the username index record under
#             vks-index/smtp-auth/usernames/ with cas 0 (the atomic claim; a left-over record is read,
#             with GET metadata of the credential it names, and taken over with cas = its version),
#             POST data with cas 0 (create), POST metadata (update)
#   list, due LIST metadata (recursively), GET metadata of each
#   show      GET metadata; no fingerprint: sys/capabilities-self (default policy) says it may not read
#   restrict  GET metadata, PATCH data with cas (patch: bumps the version without reading the
#             password), POST metadata (update)
#   delete    GET metadata, DELETE metadata (every version), GET + DELETE metadata of the username
#             index record
#   rotate    GET metadata, PATCH data with cas (claim), POST/GET/DELETE the pending record under
#             vks-rotation/smtp-auth/ (the new password while it is tested), POST data with cas
#             (finish: a new version), POST metadata; never a read of the credential's data.
#             The pending record holds only the NEW password, which the rotating operator chose
#             anyway (generated in its process, handed to its set hook); it is removed at finish.
#   rollback  needs read of an older version of the data: not this policy alone (add cred-support)
# The operator still writes passwords: it can replace one, but never learn one. Vault's ACL has no
# "deny read but allow write" within one rule, and none is needed: capabilities not listed are denied.
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/data/smtp-auth/*" {
  capabilities = ["create", "update", "patch"]
}

path "secret/metadata/smtp-auth/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# the pending password of a rotation in flight (docs/credentials.md "Rotation"): resume after a crash
# reads it back; finish and abort remove it with every version
path "secret/data/vks-rotation/smtp-auth/*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "secret/metadata/vks-rotation/smtp-auth/*" {
  capabilities = ["read", "delete"]
}

# the username index (docs/credentials.md "Usernames are unique: the index"): create claims the
# username with cas 0, or reads a left-over record and takes it over; delete removes it. A record holds
# only the credential's name and username, never a password.
path "secret/data/vks-index/smtp-auth/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/vks-index/smtp-auth/*" {
  capabilities = ["read", "delete"]
}

# The emergency reset (vks cred reset, docs/incident-runbook.md): the operator appends an entry to
# the control record with check-and-set (read its version and data, write cas = version). Only
# operators may write it: resolvers read it (mta-reader) and fail closed on a record they cannot
# understand, so a writer could stop a mount's mail, but could never make a reset credential resolve
# (the credential's own custom_metadata refuses it). It holds names, no secret.
path "secret/data/vks-control/reset" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/vks-control/reset" {
  capabilities = ["read"]
}
