-- Unmodified KumoMTA reading SMTP AUTH passwords through vks-agent's Vault-compatible endpoint
-- ([vault_api] in the agent's config; docs/agent.md "Unmodified KumoMTA"). KumoMTA's built-in
-- vault keysource needs no change: it talks to the agent as if it were Vault, and gets the
-- agent's cache, audit trail and access control (agent-issued client tokens) for free.
--
-- kumod's environment (e.g. a systemd drop-in for kumomta.service):
--   Environment=VAULT_ADDR=http://127.0.0.1:8207
--   Environment=VAULT_TOKEN=<the agent-issued client token; only its sha256 is in agent.toml>
-- Do not set VAULT_SKIP_VERIFY (inverted in vaultrs 0.7) and do not give kumod a real Vault token.
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'kumo-user',
    smtp_auth_plain_password = {
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
      vault_key = 'key',
    },
  }
end)
