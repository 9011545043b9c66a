# Vault ACL policy `mta-reader`: what an MTA host (vks-policy, vks-agent, the Lua resolver) needs to
# resolve a `vks cred` credential, and nothing else (docs/credentials.md "Access control").
#   vault policy write mta-reader mta-reader.hcl
# The resolver reads the latest version of <mount>/data/<prefix><name>: field `key` (the password,
# an ENC: envelope) and `username`; the restrictions come with that answer (custom_metadata is part
# of every data read), so no metadata access is needed. No list: the MTA knows the names it asks for.
# Nothing under vks-rotation/: a pending password is never the MTA's business (docs: "Rotation").
# Mount `secret`, prefix `smtp-auth/` are the defaults; change both lines if yours differ.

path "secret/data/smtp-auth/*" {
  capabilities = ["read"]
}

# The emergency reset's control record (docs/incident-runbook.md, docs/internals/reset.md): every
# resolver reads its small metadata every 2 s and its data when the version changed, to drop reset
# credentials from its cache. Read only: a resolver can never write it. It holds names, no secret.
path "secret/metadata/vks-control/reset" {
  capabilities = ["read"]
}

path "secret/data/vks-control/reset" {
  capabilities = ["read"]
}
