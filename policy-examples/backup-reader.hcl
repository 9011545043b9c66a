# Vault ACL policy `backup-reader`: what `vks backup create` needs and nothing more (docs/backup.md
# "Duties"): list and read the metadata and read every version's data under the prefix. It gives
# the ENC: envelopes, never a password: the envelope key is not in Vault. It cannot write, delete
# or read anything outside the prefix. Restoring needs a token that may write the target mount
# (create, update on data/ and metadata/, update on delete/ and destroy/): use an administrator's
# token on the fresh target, not this one.
#   vault policy write backup-reader backup-reader.hcl
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/metadata/smtp-auth/*" {
  capabilities = ["read", "list"]
}

path "secret/data/smtp-auth/*" {
  capabilities = ["read"]
}
