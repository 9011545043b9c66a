# Vault ACL policy `cred-tenant-globex`: everything `vks cred` does, for tenant `globex` only: its
# credentials live under the prefix smtp-auth/globex/ (`vks cred ... --prefix smtp-auth/globex/` or
# VKS_CRED_PREFIX=smtp-auth/globex/), and nothing outside it is readable, listable or writable, not even
# the names of other tenants' credentials (docs/credentials.md "Per-tenant prefixes").
#   vault policy write cred-tenant-globex cred-tenant-globex.hcl
# One such policy per tenant (copy it, replacing "globex" everywhere), or one templated policy for all
# tenants with Vault's identity templating (docs/credentials.md shows that form). For a tenant's MTA
# keep only the first block's "read".
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/data/smtp-auth/globex/*" {
  capabilities = ["create", "read", "update", "patch"]
}

path "secret/metadata/smtp-auth/globex/*" {
  capabilities = ["create", "read", "update", "delete", "list"]
}

# rotation's pending record for this tenant's credentials (docs/credentials.md "Rotation")
path "secret/data/vks-rotation/smtp-auth/globex/*" {
  capabilities = ["create", "read", "update", "delete"]
}

path "secret/metadata/vks-rotation/smtp-auth/globex/*" {
  capabilities = ["read", "delete"]
}

# the username index of this tenant's prefix (docs/credentials.md "Usernames are unique: the index"):
# create claims the username with cas 0, or reads a left-over record and takes it over; delete removes
# it. A record holds only the credential's name and username, never a password.
path "secret/data/vks-index/smtp-auth/globex/*" {
  capabilities = ["create", "read", "update"]
}

path "secret/metadata/vks-index/smtp-auth/globex/*" {
  capabilities = ["read", "delete"]
}

# The emergency reset's control record is shared by every tenant of the mount: a tenant may read it
# (its MTAs check it) but not write it, so `vks cred reset` by this tenant marks its credentials
# (every fresh lookup refuses them) and then stops with "the control record was not written": the
# incident responder (cred-operator) writes it, or running processes drop them when their cache
# entry expires (docs/incident-runbook.md).
path "secret/metadata/vks-control/reset" {
  capabilities = ["read"]
}

path "secret/data/vks-control/reset" {
  capabilities = ["read"]
}
