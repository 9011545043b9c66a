-- SMTP AUTH with the password inline (KumoMTA's documented example, unchanged).
-- Inline passwords live in the policy file: fine for a lab, not for production (see the Vault
-- examples next to this one).
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    -- The password can be any keysource value
    smtp_auth_plain_password = {
      key_data = 'tiger',
    },
  }
end)
