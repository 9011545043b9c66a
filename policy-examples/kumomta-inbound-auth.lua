-- KumoMTA as the submission server for applications holding `vks cred create --inbound`
-- credentials (docs/inbound.md "KumoMTA"). Pure Lua: KumoMTA loads no native module, so the
-- password is checked by vks-agent over HTTP with kumo.http.
--
-- The agent (agent.toml) serves the verify endpoints on its [vault_api] listener:
--   [vault_api]
--   listen = "127.0.0.1:8207"
--   tls = false                       # loopback only; or tls_cert/tls_key and https:// below
--   [[vault_api.client]]
--   name = "kumod"
--   token_sha256 = "<sha256 of the token kumod presents>"
--   mounts = ["secret"]
--   path_prefixes = ["none/"]         # this client reads no secret, it only verifies logins
--   [inbound]
--   http_verify = true
--
-- kumod's environment holds the client token (a systemd drop-in for kumomta.service):
--   Environment=VKS_AGENT_TOKEN=<the token>
--
-- 1. AUTH PLAIN (KumoMTA offers it only after STARTTLS): the agent checks the password against
--    the credential's verifier, the client address against its allowed addresses, the lockout;
--    every attempt is one audit event in the agent's trail.
-- 2. MAIL FROM: the sender's domain against the credential's sending domains.
-- Anything unexpected (agent down, timeout, bad answer) refuses: a 4xx for the sender check,
-- a failed AUTH for the login. Never log the password.
local kumo = require 'kumo'

local AGENT = os.getenv 'VKS_AGENT_URL' or 'http://127.0.0.1:8207'
local TOKEN = os.getenv 'VKS_AGENT_TOKEN'

local client -- one HTTP client for the process (connection reuse); built on first use
local function http()
  if not client then
    client = kumo.http.build_client { timeout = '5 seconds' }
  end
  return client
end

-- "192.0.2.7:51234" -> "192.0.2.7"; "[2001:db8::7]:51234" -> "2001:db8::7"
local function peer_address(conn_meta)
  local from = conn_meta:get_meta 'received_from' or ''
  local v6 = from:match '^%[(.-)%]:%d+$'
  if v6 then
    return v6
  end
  return from:match '^([%d%.]+):%d+$' or from
end

-- POST a JSON body to the agent; returns the decoded answer, or nil and a reason.
local function ask(path, body)
  if not TOKEN or TOKEN == '' then
    return nil, 'VKS_AGENT_TOKEN is not set'
  end
  local ok, resp = pcall(function()
    local req = http():post(AGENT .. path)
    req:header('Content-Type', 'application/json')
    req:header('X-Vault-Token', TOKEN)
    req:body(kumo.serde.json_encode(body))
    return req:send()
  end)
  if not ok then
    return nil, 'vks-agent unreachable'
  end
  local status = resp:status_code()
  if status ~= 200 then
    return nil, 'vks-agent answered HTTP ' .. tostring(status)
  end
  local decoded_ok, answer = pcall(kumo.serde.json_parse, resp:text())
  if not decoded_ok or type(answer) ~= 'table' then
    return nil, 'vks-agent sent an unreadable answer'
  end
  return answer
end

kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authz ~= authc then
    return false -- no acting on behalf of another login
  end
  local answer = ask('/v1/vks/inbound/verify', {
    username = authc,
    password = password,
    source = peer_address(conn_meta),
  })
  if answer and answer.ok == true then
    conn_meta:set_meta('vks_login', answer.username or authc)
    return true
  end
  return false
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local login = conn_meta:get_meta 'vks_login'
  if not login then
    return -- not authenticated through vks: the listener's relay rules decide
  end
  local answer = ask('/v1/vks/inbound/sender', {
    username = login,
    sender = tostring(sender),
    source = peer_address(conn_meta),
  })
  if not answer then
    kumo.reject(451, '4.7.1 sender check unavailable, try again later')
  elseif answer.ok ~= true then
    kumo.reject(550, '5.7.1 sender domain is not allowed for this login')
  end
end)
