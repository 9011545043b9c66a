-- Authenticate to Vault with AppRole instead of a long-lived token. The role id and the secret id
-- stay out of the policy file: VKS_APPROLE_ROLE_ID and VKS_APPROLE_SECRET_ID_FILE (a 0600 file,
-- e.g. delivered by your orchestrator) are read from the environment. The module logs in, renews
-- the token before it expires and logs in again if it is revoked.
local kumo = require 'kumo'
local vks = require 'vault_keysource'

kumo.on('init', function()
  vks.setup { auth = 'approle' }
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
