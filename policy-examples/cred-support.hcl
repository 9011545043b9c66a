# Vault ACL policy `cred-support`: lists and shows credentials and reveals a password for a ticket
# (`vks cred reveal NAME --reason TEXT`, audited with this token's identity); changes nothing
# (docs/credentials.md "Access control").
#   vault policy write cred-support cred-support.hcl
#   list, due LIST + GET metadata       show  GET metadata (+ GET data for the fingerprint)
#   reveal    GET metadata, GET data (decrypted locally with the ENC: key; audited before it is shown)
# Mount `secret`, prefix `smtp-auth/` are the defaults; change the paths if yours differ.

path "secret/data/smtp-auth/*" {
  capabilities = ["read"]
}

path "secret/metadata/smtp-auth/*" {
  capabilities = ["read", "list"]
}
