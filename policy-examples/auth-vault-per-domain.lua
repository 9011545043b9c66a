-- SMTP AUTH with one credential per destination domain in Vault KV v2 (KumoMTA's documented
-- example, unchanged): the password is read from secret/smtp-auth/<domain>, key "key".
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    -- The password can be any keysource value.
    -- Here we are loading the credential for the domain
    -- from HashiCorp vault
    smtp_auth_plain_password = {
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
      -- Optional: specify a custom key name (defaults to "key")
      -- vault_key = "password"
    },
  }
end)
