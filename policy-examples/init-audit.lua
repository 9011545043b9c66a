-- A complete egress policy for production-like use: the module is configured once in `init`
-- (process-wide; re-running it with the same options is a no-op), every lookup is written to a
-- hash-chained audit file before the password is handed out (on_failure = 'deny': no audit, no
-- password), values must be ENC: envelopes, and secrets are cached in locked memory for 5 minutes.
-- Verify the trail with:  vks audit verify /var/log/vault-keysource/audit.jsonl
--
-- Vault address, token/AppRole and CA come from the environment (VAULT_ADDR, VAULT_TOKEN or
-- VKS_APPROLE_*, VAULT_CACERT); the encryption key from VKS_ENCRYPTION_KEY(S|_FILE).
local kumo = require 'kumo'
local vks = require 'vault_keysource'

local AUDIT_FILE = os.getenv('VKS_AUDIT_FILE') or '/var/log/vault-keysource/audit.jsonl'

kumo.on('init', function()
  vks.setup {
    require_encrypted = true,
    audit = { file = AUDIT_FILE, mode = 'sync', on_failure = 'deny' },
    cache = { ttl = 300 },
  }
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
