-- AppRole (login, re-login after the token expired), namespaces, configuration from the
-- environment alone (no setup, ~/.vault-token), and ENC: envelopes end to end (versioned bound to
-- mount/path/key, legacy, copied to another place, tampered, wrong key, require_encrypted).
local T = require 'testlib'
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
T.reexec {
  VKS_CACHE_TTL = '0', VAULT_ADDR = false, VAULT_TOKEN = false, HOME = WORK,
  VKS_ENCRYPTION_KEY = 'cmVzb2x2ZXItdGVzdC1rZXktTFVBMzMtMDEyMzQ1Njc=', -- resolver-test-key-LUA33-01234567
  VKS_ENCRYPTION_KEY_FILE = false, VKS_ENCRYPTION_KEYS = false, MAIL_PROXY_ENCRYPTION_KEY = false,
}
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW_AR = 'relay-pw-LUA33-approle-99aa'
local PW_NS = 'relay-pw-LUA33-namespace-77'
local PW_ROOTNS = 'relay-pw-LUA33-rootns-55cc'
local PW_ENC = 'relay-pw-LUA33-encrypted-3d'
local ROLE_ID = 'relay-role-LUA33-8f2e1a'
local SECRET_ID = 'secret-id-LUA33-4b7c9d2e0f'
local OTHER_KEY = 'cmVzb2x2ZXItb3RoZXIta2V5LUxVQTMzLTAxMjM0NTY=' -- resolver-other-key-LUA33-0123456

local ROOT = os.getenv('ROOT') or '.'
local BUILD = os.getenv('BUILD') or 'build'
local TOOL = (BUILD:sub(1, 1) == '/' and BUILD or ROOT .. '/' .. BUILD) .. '/tests/helpers/envelope_tool'

local function read_all(cmd)
  local p = assert(io.popen(cmd, 'r'))
  local out = p:read('a')
  p:close()
  return out
end

-- An envelope of `plain` for (mount, path, key); extra = '--legacy' or env assignments.
local function encrypt(plain, mount, path, key, extra, env)
  local pf = T.write_file(WORK .. '/plain.tmp', plain)
  local cmd = string.format('%s %s encrypt --mount %s --path %s --key %s %s < %s', env or '', T.shq(TOOL),
    T.shq(mount), T.shq(path), T.shq(key), extra or '', T.shq(pf))
  local out = read_all(cmd):gsub('%s+$', '')
  os.remove(pf)
  assert(out:sub(1, 4) == 'ENC:', 'envelope_tool gave no envelope')
  return out
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local base = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
    min_retry_wait = '10ms', max_retry_wait = '20ms' }
  vks.setup(base)

  T.test('AppRole: login with role_id and secret_id_file, read, re-login after expiry', function()
    vd:call('POST', '/v1/sys/auth/approle', { type = 'approle' })
    vd:policy('relay', 'path "secret/data/smtp-auth/*" { capabilities = ["read"] }')
    vd:call('POST', '/v1/auth/approle/role/relay', { token_policies = { 'relay' }, token_ttl = '1h' })
    vd:call('POST', '/v1/auth/approle/role/relay/role-id', { role_id = ROLE_ID })
    vd:call('POST', '/v1/auth/approle/role/relay/custom-secret-id', { secret_id = SECRET_ID })
    vd:kv2_put('smtp-auth/approle.example', { key = PW_AR })
    local sid = T.write_file(WORK .. '/secret-id', SECRET_ID .. '\n')
    local _, changed = vks.setup { address = vd.addr, ca_cert = vd.cacert, role_id = ROLE_ID, secret_id_file = sid,
      timeout = '5s' }
    T.eq(changed, true, 'approle setup')
    vd:reset_counters()
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/approle.example' }
    T.same_secret(vks.resolve(k), PW_AR, 'via AppRole')
    T.same_secret(vks.resolve(k), PW_AR, 'again, same token')
    T.eq(vd:count('POST', '/v1/auth/approle/login'), 1, 'one login for two lookups')
    vd:advance(2 * 3600) -- the server now sees the token as expired
    T.same_secret(vks.resolve(k), PW_AR, 'after expiry')
    T.eq(vd:count('POST', '/v1/auth/approle/login'), 2, 'one re-login')
    T.fails('permission_denied', { 'other/x' }, vks.resolve,
      { vault_mount = 'secret', vault_path = 'other/x' })
    vd:clock(0)
  end)

  T.test('AppRole with a wrong secret_id: auth_failed, secret_id never in the message', function()
    local sid = T.write_file(WORK .. '/secret-id-bad', 'secret-id-LUA33-wrong-0000\n')
    vks.setup { address = vd.addr, ca_cert = vd.cacert, role_id = ROLE_ID, secret_id_file = sid, timeout = '5s' }
    local msg = T.fails('auth_failed', {}, vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/approle.example' })
    T.not_contains(msg, 'secret-id-LUA33', 'message')
    vks.setup(base)
  end)

  T.test('namespaces: keysource vault_namespace, setup namespace, "" for the root', function()
    vd:call('POST', '/v1/sys/namespaces/team-a', {})
    local nsh = { ['X-Vault-Namespace'] = 'team-a' }
    vd:call('POST', '/v1/sys/mounts/secret', { type = 'kv', options = { version = '2' } }, nil, nsh)
    local st = vd:call('POST', '/v1/secret/data/smtp-auth/ns.example', { data = { key = PW_NS } }, nil, nsh)
    T.eq(st, 200, 'write in the namespace')
    vd:kv2_put('smtp-auth/ns.example', { key = PW_ROOTNS })
    local k = { vault_mount = 'secret', vault_path = 'smtp-auth/ns.example', vault_namespace = 'team-a' }
    T.same_secret(vks.resolve(k), PW_NS, 'keysource namespace')
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/ns.example' }), PW_ROOTNS, 'root')
    local o = {}
    for kk, v in pairs(base) do o[kk] = v end
    o.namespace = 'team-a'
    vks.setup(o)
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/ns.example' }), PW_NS,
      'setup namespace')
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/ns.example', vault_namespace = '' }),
      PW_ROOTNS, 'explicit root namespace')
    T.fails('not_found', { 'smtp-auth/nothing' }, vks.resolve,
      { vault_mount = 'secret', vault_path = 'smtp-auth/nothing', vault_namespace = 'team-a' })
    vks.setup(base)
  end)

  T.test('without setup the environment and ~/.vault-token are used', function()
    T.write_file(WORK .. '/.vault-token', vd.root_token .. '\n')
    local child = T.write_file(WORK .. '/child.lua', [[
      local vks = require 'vault_keysource'
      local v, msg, code = vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/approle.example' })
      if v == ']] .. PW_AR .. [[' then print('CHILD OK') else print('CHILD FAIL', code, msg) end
    ]])
    local out = read_all(string.format('env VAULT_ADDR=%s VAULT_CACERT=%s HOME=%s lua5.4 %s 2>&1',
      T.shq(vd.addr), T.shq(vd.cacert), T.shq(WORK), T.shq(child)))
    os.remove(WORK .. '/.vault-token')
    T.contains(out, 'CHILD OK', 'child output')
    -- and VAULT_TOKEN wins over ~/.vault-token; a bad VAULT_CLIENT_TIMEOUT is a config error
    out = read_all(string.format('env VAULT_ADDR=%s VAULT_CACERT=%s VAULT_CLIENT_TIMEOUT=soon lua5.4 %s 2>&1',
      T.shq(vd.addr), T.shq(vd.cacert), T.shq(child)))
    T.contains(out, 'CHILD FAIL\tconfig', 'bad environment')
    T.contains(out, 'VAULT_CLIENT_TIMEOUT', 'names the variable')
  end)

  T.test('ENC: versioned envelope bound to its place decrypts', function()
    vd:kv2_put('smtp-auth/enc.example', { key = encrypt(PW_ENC, 'secret', 'smtp-auth/enc.example', 'key') })
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/enc.example' }), PW_ENC, 'decrypted')
  end)

  T.test('ENC: the same envelope copied to another credential fails (AAD)', function()
    local env = encrypt(PW_ENC, 'secret', 'smtp-auth/enc.example', 'key')
    vd:kv2_put('smtp-auth/copy.example', { key = env })
    local msg = T.fails('decrypt_failed', { 'smtp-auth/copy.example' }, vks.resolve,
      { vault_mount = 'secret', vault_path = 'smtp-auth/copy.example' })
    T.not_contains(msg, PW_ENC, 'message')
    vd:kv2_put('smtp-auth/enc.example', { key = env, password = env })
    T.fails('decrypt_failed', {}, vks.resolve,
      { vault_mount = 'secret', vault_path = 'smtp-auth/enc.example', vault_key = 'password' })
  end)

  T.test('ENC: tampered ciphertext and a wrong key fail with decrypt_failed', function()
    local env = encrypt(PW_ENC, 'secret', 'smtp-auth/t.example', 'key')
    local i = #env - 10
    local c = env:sub(i, i)
    local tampered = env:sub(1, i - 1) .. (c == 'A' and 'B' or 'A') .. env:sub(i + 1)
    vd:kv2_put('smtp-auth/t.example', { key = tampered })
    T.fails('decrypt_failed', { 'smtp-auth/t.example' }, vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/t.example' })
    local other = encrypt(PW_ENC, 'secret', 'smtp-auth/w.example', 'key', '--legacy',
      'env VKS_ENCRYPTION_KEY=' .. OTHER_KEY)
    vd:kv2_put('smtp-auth/w.example', { key = other })
    T.fails('decrypt_failed', { 'smtp-auth/w.example' }, vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/w.example' })
  end)

  T.test('ENC: legacy genro-mail-proxy envelopes work in Vault, key_data and files', function()
    local legacy = encrypt(PW_ENC, 'x', 'y', 'z', '--legacy')
    vd:kv2_put('smtp-auth/legacy.example', { key = legacy })
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/legacy.example' }), PW_ENC, 'vault')
    T.same_secret(vks.resolve({ key_data = legacy }), PW_ENC, 'key_data')
    local f = T.write_file(WORK .. '/enc.pw', legacy .. '\n')
    T.same_secret(vks.resolve(f), PW_ENC, 'file with a trailing newline')
  end)

  T.test('require_encrypted: plaintext refused, envelopes accepted', function()
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    o.require_encrypted = true
    vks.setup(o)
    T.fails('not_encrypted', { 'smtp-auth/approle.example' }, vks.resolve,
      { vault_mount = 'secret', vault_path = 'smtp-auth/approle.example' })
    T.same_secret(vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/legacy.example' }), PW_ENC, 'envelope')
    vks.setup(base)
  end)
end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
