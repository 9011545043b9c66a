-- Inbound SMTP credentials checked by the vault_keysource module itself (docs/inbound.md "From
-- the Lua module"), for a KumoMTA-style host that can load native modules (vks-policy): the same
-- two events as policy-examples/kumomta-inbound-auth.lua, without the agent in between.
-- vks.setup{} (or VAULT_ADDR, VAULT_CACERT, VAULT_TOKEN in the environment) names Vault; the
-- token needs policy-examples/mta-inbound.hcl.
local kumo = require 'kumo'
local vks = require 'vault_keysource'

-- "192.0.2.7:51234" -> "192.0.2.7"; "[2001:db8::7]:51234" -> "2001:db8::7"
local function peer_address(conn_meta)
  local from = conn_meta:get_meta 'received_from' or ''
  return from:match '^%[(.-)%]:%d+$' or from:match '^([%d%.]+):%d+$' or from
end

kumo.on('smtp_server_auth_plain', function(authz, authc, password, conn_meta)
  if authz ~= authc then
    return false
  end
  local ok, username = vks.inbound_verify(authc, password, peer_address(conn_meta))
  if ok == true then
    conn_meta:set_meta('vks_login', username)
    return true
  end
  return false
end)

kumo.on('smtp_server_mail_from', function(sender, conn_meta)
  local login = conn_meta:get_meta 'vks_login'
  if not login then
    return
  end
  local ok, result = vks.inbound_sender(login, tostring(sender), peer_address(conn_meta))
  if ok == true then
    return
  end
  if result == 'temp' or result == nil then
    kumo.reject(451, '4.7.1 sender check unavailable, try again later')
  end
  kumo.reject(550, '5.7.1 sender domain is not allowed for this login')
end)
