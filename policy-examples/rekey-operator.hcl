# Vault ACL policy `rekey-operator`: what `vks rekey` needs and nothing more (docs/rekey.md "Who
# runs it"): list and read the metadata, read the latest data (the envelopes), PATCH data with
# check-and-set (only the re-keyed fields travel) and write a credential's metadata (rev,
# current_version, key_id). No create (a path that does not exist is never written), no delete.
# Together with the envelope keys this reads every password under the prefix: give it to the key
# custodian for the duration of a key rotation, not to a standing role. Every run is audited.
#   vault policy write rekey-operator rekey-operator.hcl
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/metadata/smtp-auth/*" {
  capabilities = ["read", "list", "update"]
}

path "secret/data/smtp-auth/*" {
  capabilities = ["read", "patch"]
}
