-- An {event_name, event_args} keysource: the module calls the policy's kumo.on handler for the
-- event, which returns the secret (here it reads Vault through kumo.secrets.load, picking the
-- path from its arguments). Useful when the location of a credential needs logic.
local kumo = require 'kumo'

kumo.on('get_relay_password', function(tenant, domain)
  return kumo.secrets.load {
    vault_mount = 'secret',
    vault_path = string.format('smtp-auth/%s/%s', tenant, domain),
    vault_key = 'password',
  }
end)

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = { event_name = 'get_relay_password', event_args = { 'acme', domain } },
  }
end)
