-- Credentials stored in Vault as ENC: envelopes (AES-256-GCM), so that a Vault backup, a KV
-- export or a too-broad read policy shows no usable password. The key comes from the environment
-- of the MTA (VKS_ENCRYPTION_KEY / VKS_ENCRYPTION_KEY_FILE / VKS_ENCRYPTION_KEYS), never from Vault.
-- require_encrypted refuses any value that is still plaintext (code not_encrypted).
--
-- Store a value (the envelope is bound to its mount, path and key):
--   printf '%s' "$PASSWORD" | vks envelope encrypt --mount secret --path smtp-auth/example.com --key password
--   vault kv put -mount=secret smtp-auth/example.com password=ENC:v2:...
local kumo = require 'kumo'
local vks = require 'vault_keysource'

kumo.on('init', function()
  vks.setup { require_encrypted = true }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = {
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
      vault_key = 'password',
    },
  }
end)
