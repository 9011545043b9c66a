-- Unmodified KumoMTA reading SMTP AUTH passwords through vks-agent's Vault-compatible endpoint
-- ([vault_api] in the agent's config; docs/agent.md "Unmodified KumoMTA"). KumoMTA's built-in
-- vault keysource needs no change: it talks to the agent as if it were Vault, and gets the
-- agent's cache, audit trail and access control (agent-issued client tokens) for free.
--
-- vault_address below is the agent's plain-HTTP loopback listener:
--   [vault_api]
--   listen = "127.0.0.1:8207"
--   tls = false            # plain HTTP: refused by the agent unless listen is a loopback address
-- KumoMTA builds a new Vault client (new connection, new TLS handshake) for every keysource
-- read, i.e. for every outbound connection that does AUTH; over loopback plain HTTP that read
-- costs a fraction of a TLS handshake. To use HTTPS instead, give the agent tls_cert/tls_key and
-- write 'https://127.0.0.1:8207' here, with VAULT_CACERT=<the agent's certificate> in kumod's
-- environment (the certificate needs IP:127.0.0.1 in its subjectAltName).
--
-- The client token stays out of the policy file, in kumod's environment (e.g. a systemd drop-in
-- for kumomta.service):
--   Environment=VAULT_TOKEN=<the agent-issued client token; only its sha256 is in agent.toml>
-- Do not set VAULT_SKIP_VERIFY (inverted in vaultrs 0.7) and do not give kumod a real Vault token.
local kumo = require 'kumo'

kumo.on('get_egress_path_config', function(domain, egress_source, site_name)
  return kumo.make_egress_path {
    enable_tls = 'Required',
    smtp_auth_plain_username = 'kumo-user',
    smtp_auth_plain_password = {
      vault_address = 'http://127.0.0.1:8207',
      vault_mount = 'secret',
      vault_path = 'smtp-auth/' .. domain,
      vault_key = 'key',
    },
  }
end)
