-- Credentials in a Vault Enterprise namespace (X-Vault-Namespace). vault_namespace is an
-- extension of ours (KumoMTA has no namespace support); a namespace for every lookup can also be
-- set with vks.setup{ namespace = 'mail' } or VAULT_NAMESPACE.
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = {
      vault_namespace = 'mail',
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
      vault_key = 'password',
    },
  }
end)
