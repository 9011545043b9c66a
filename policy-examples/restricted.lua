-- One relay credential shared by several domains, restricted in Vault to the domains and the
-- relay it is meant for (least privilege; docs/restrictions.md):
--   vault kv put -mount=secret smtp-auth/shared-relay password=...
--   vault kv metadata put -mount=secret \
--     -custom-metadata=allowed_domains='example.com,*.example.com' \
--     -custom-metadata=allowed_hosts='127.0.0.1,relay.example.net' smtp-auth/shared-relay
-- vks-policy passes the lookup context (domain, destination) with every lookup; a domain or a
-- relay outside the lists gets code `restricted` and the password is never sent.
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = {
      vault_mount = 'secret',
      vault_path = 'smtp-auth/shared-relay',
      vault_key = 'password',
    },
  }
end)
