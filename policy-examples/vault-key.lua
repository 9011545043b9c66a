-- One credential per domain in Vault KV v2, stored under a custom field name.
--   vault kv put -mount=secret smtp-auth/example.com username=daniel password=...
-- vault_key names the field inside the secret (KumoMTA's default is "key").
local kumo = require 'kumo'

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
