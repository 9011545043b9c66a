-- Provokes every error path of vks.resolve / vks.setup with secret-bearing inputs, for
-- tests/integration/39-no-secret-in-output.sh. Prints one line per failure:
--   MSG <code> <message>       a runtime failure (nil, message, code)
--   RAISED <message>           an error raised by misuse or by setup
--   WRONG <want> <got> <msg>   the failure did not have the expected code
-- The secrets below are in tests/test-secrets.d/resolver.txt: none of them may appear in any of
-- this script's output.
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local TOKEN = 'tok-LUA39-in-keysource-51d2'
local PW = 'relay-pw-LUA39-plaintext-8e'
local KEYDATA = 'keydata-LUA39-secret-a7f3c'
local EVT = 'event-pw-LUA39-raised-0c9d'
local OTHER_KEY = 'cmVzb2x2ZXItb3RoZXIta2V5LUxVQTMzLTAxMjM0NTY='
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
local BUILD = os.getenv('BUILD') or 'build'
local ROOT = os.getenv('ROOT') or '.'
local TOOL = (BUILD:sub(1, 1) == '/' and BUILD or ROOT .. '/' .. BUILD) .. '/tests/helpers/envelope_tool'

local function expect(code, f, ...)
  local v, msg, got = f(...)
  if v ~= nil then
    print('WRONG ' .. code .. ' value')
    return
  end
  print('MSG ' .. tostring(got) .. ' ' .. tostring(msg))
  if got ~= code then print('WRONG ' .. code .. ' ' .. tostring(got) .. ' ' .. tostring(msg)) end
end

local function raises(f, ...)
  local ok, e = pcall(f, ...)
  if ok then print('WRONG raise none') return end
  print('RAISED ' .. tostring(e))
  if tostring(e):match(':%s*$') then print('WRONG raise empty-message') end
end

local function shq(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
local function encrypt(plain, env, extra)
  local pf = WORK .. '/plain39.tmp'
  local f = assert(io.open(pf, 'wb')); f:write(plain); f:close()
  local p = assert(io.popen(string.format('%s %s encrypt --mount secret --path smtp-auth/e39 --key key %s < %s',
    env or '', shq(TOOL), extra or '', shq(pf))))
  local out = p:read('a'):gsub('%s+$', '')
  p:close()
  os.remove(pf)
  return out
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  -- setup errors with a token among the options
  raises(vks.setup, { address = vd.addr, token = TOKEN, timeout = 'soon' })
  raises(vks.setup, { address = vd.addr, token = TOKEN .. '\n' })
  raises(vks.setup, { address = 'https://user:' .. PW .. '@127.0.0.1:1', token = TOKEN })
  raises(vks.setup, { address = vd.addr, token = TOKEN, adress = vd.addr })
  raises(vks.setup, { address = vd.addr, secret_id = TOKEN, role_id = 'r', ca_cert = '/nonexistent' })
  vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '3s', max_retries = 1,
    min_retry_wait = '10ms', max_retry_wait = '20ms' }

  vd:kv2_put('smtp-auth/p39', { key = PW, password = PW, n = 5 })
  local k = function(extra)
    local t = { vault_mount = 'secret', vault_path = 'smtp-auth/p39', vault_token = TOKEN }
    for a, b in pairs(extra or {}) do t[a] = b end
    return t
  end

  -- malformed keysources carrying a token or key_data
  expect('bad_keysource', vks.resolve, k { vault_kv_version = 9 })
  expect('bad_keysource', vks.resolve, k { vault_tokn = TOKEN })
  expect('bad_keysource', vks.resolve, k { vault_address = 'https://u:' .. TOKEN .. '@127.0.0.1:1' })
  expect('bad_keysource', vks.resolve, k { vault_path = '../' .. TOKEN })
  expect('bad_keysource', vks.resolve, { key_data = KEYDATA, vault_bogus = KEYDATA })
  expect('bad_keysource', vks.resolve, { vault_mount = 'secret', vault_token = TOKEN })
  expect('bad_keysource', vks.resolve, { event_name = KEYDATA })
  raises(vks.resolve, 42, { domain = TOKEN })
  raises(vks.resolve, { key_data = KEYDATA }, { domain = {} })

  -- Vault refusing a token given in the keysource (an unknown token: 403)
  expect('permission_denied', vks.resolve, k())
  -- a real token without access
  vd:policy('none39', 'path "secret/data/elsewhere/*" { capabilities = ["read"] }')
  local weak = vd:create_token { policies = { 'none39' }, ttl = '1h' }
  expect('permission_denied', vks.resolve, k { vault_token = weak })
  -- the password sits next to the key asked for
  expect('missing_key', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39', vault_key = 'nope' })
  expect('missing_key', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39', vault_key = 'n' })
  expect('not_found', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/none39' })
  -- a server that puts the secret into its error bodies
  vd:fault { action = 'status', status = 500, body = 'internal error near ' .. PW, path_prefix = '/v1/secret/', count = 5 }
  expect('unavailable', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39' })
  vd:clear_faults()
  vd:fault { action = 'non_json', status = 200, body = '<html>' .. PW .. '</html>', path_prefix = '/v1/secret/', count = 5 }
  expect('bad_response', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39' })
  vd:clear_faults()
  vd:fault { action = 'truncate', path_prefix = '/v1/secret/', count = 5 }
  local v, m, c = vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/p39' })
  print('MSG ' .. tostring(c) .. ' ' .. tostring(m))
  vd:clear_faults()
  vd:fault { action = 'status', status = 403, body = { errors = { 'permission denied' } }, path_prefix = '/v1/secret/', count = 1 }
  expect('permission_denied', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39' })
  vd:clear_faults()

  -- envelopes: wrong key, tampered, copied, not encrypted
  vd:kv2_put('smtp-auth/e39', { key = encrypt(PW, 'env VKS_ENCRYPTION_KEY=' .. OTHER_KEY) })
  expect('decrypt_failed', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/e39' })
  local good = encrypt(PW)
  local tampered = good:sub(1, 20) .. (good:sub(21, 21) == 'A' and 'B' or 'A') .. good:sub(22)
  vd:kv2_put('smtp-auth/e39', { key = tampered })
  expect('decrypt_failed', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/e39' })
  vd:kv2_put('smtp-auth/copy39', { key = good })
  expect('decrypt_failed', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/copy39' })
  expect('decrypt_failed', vks.resolve, { key_data = tampered })
  vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '3s', require_encrypted = true }
  expect('not_encrypted', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39' })
  expect('not_encrypted', vks.resolve, { key_data = KEYDATA })
  vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '3s' }

  -- restrictions
  vd:call('POST', '/v1/secret/metadata/smtp-auth/p39', { custom_metadata = { allowed_domains = 'only.example' } })
  expect('restricted', vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/p39' }, { domain = 'x.example' })

  -- event handlers misbehaving with secrets
  vks.set_event_handler(function(name, args)
    if args[1] == 'raise' then error('cannot fetch ' .. EVT .. ' for ' .. name) end
    if args[1] == 'table' then return { EVT } end
    return nil, 'not there: ' .. EVT, 'not_found'
  end)
  expect('unavailable', vks.resolve, { event_name = 'ev39', event_args = { 'raise' } })
  expect('bad_response', vks.resolve, { event_name = 'ev39', event_args = { 'table' } })
  expect('not_found', vks.resolve, { event_name = 'ev39', event_args = { 'nil' } })

  -- files
  local big = WORK .. '/big39.pw'
  local f = assert(io.open(big, 'wb')); f:write(string.rep(PW, 300)); f:close()
  expect('file_error', vks.resolve, big)
  expect('file_error', vks.resolve, WORK .. '/' .. 'missing39.pw')

  -- Vault down, with a token in the keysource
  expect('unavailable', vks.resolve, k { vault_address = 'https://127.0.0.1:1' })
end)
vd:stop()
if not ok then
  io.stderr:write('provoke_errors: ' .. tostring(err) .. '\n')
  os.exit(1)
end
