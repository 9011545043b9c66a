# Vault ACL policy `mta-inbound`: what vks-agent's [inbound] (and vks.inbound_verify) needs to check
# the logins of `vks cred create --inbound` credentials, and nothing else (docs/inbound.md).
#   vault policy write mta-inbound mta-inbound.hcl
# A login reads the username index record (vks-index/<prefix>usernames/<hex of the lowercased
# username>: the credential's name) and then the credential's latest version: `verifier` (or, for
# --retrievable ones, `key`), `username`, and the custom_metadata that comes with every data read
# (direction, state, allowed_domains, allowed_hosts). Beside them the emergency reset's control
# record (docs/incident-runbook.md): its metadata every 2 s and its data when it changed, so a reset
# reaches a login the success cache would have accepted. No list, no other metadata, no writes.
# Mount `secret`, prefix `smtp-auth/` are the defaults; change both paths if yours differ.

path "secret/data/vks-index/smtp-auth/usernames/*" {
  capabilities = ["read"]
}

path "secret/data/smtp-auth/*" {
  capabilities = ["read"]
}

path "secret/metadata/vks-control/reset" {
  capabilities = ["read"]
}

path "secret/data/vks-control/reset" {
  capabilities = ["read"]
}
