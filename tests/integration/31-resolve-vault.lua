-- vks.resolve against build/vault-dev over HTTPS: KV v2 / v1 / auto, version pins, vault_key,
-- per-keysource address and token, restrictions, and every Vault failure reachable from Lua with
-- its code and a message naming the keysource (never the token).
local T = require 'testlib'
-- caching off: every lookup here must reach vault-dev (the cache is exercised in 32-resolve-cache)
T.reexec { VKS_CACHE_TTL = '0', VAULT_ADDR = false, VAULT_TOKEN = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW1 = 'relay-pw-LUA31-a1b2c3d4e5'
local PW2 = 'relay-pw-LUA31-f6a7b8c9d0'
local PW3 = 'relay-pw-LUA31-v1-11223344'
local PW_OLD = 'relay-pw-LUA31-old-5566aa'
local PW_NEW = 'relay-pw-LUA31-new-7788bb'

local vd = vaultdev.start { tls = true, args = { '--kv1', 'kv' } }
local standby, plain
local ok, err = pcall(function()
  local base = {
    address = vd.addr, ca_cert = vd.cacert, token = vd.root_token,
    timeout = '5s', max_retries = 2, min_retry_wait = '10ms', max_retry_wait = '20ms',
  }
  local function setup(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra or {}) do o[k] = v end
    return vks.setup(o)
  end
  setup()

  vd:kv2_put('smtp-auth/example.com', { key = PW1, password = PW2, port = 587 })
  vd:kv1_put('smtp-auth/v1.example', { password = PW3 }, 'kv')

  local function ks(path, extra)
    local t = { vault_mount = 'secret', vault_path = path }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end

  -- every failure message names the keysource and holds no token or password
  local function fails(code, parts, keysource, ctx)
    local msg = T.fails(code, parts, vks.resolve, keysource, ctx)
    T.not_contains(msg, vd.root_token, 'message of ' .. code)
    for _, pw in ipairs { PW1, PW2, PW3 } do T.not_contains(msg, pw, 'message of ' .. code) end
    return msg
  end

  T.test('KV v2: the default key is "key", like KumoMTA', function()
    T.same_secret(vks.resolve(ks('smtp-auth/example.com')), PW1, 'key')
  end)

  T.test('KV v2: vault_key selects the field', function()
    T.same_secret(vks.resolve(ks('smtp-auth/example.com', { vault_key = 'password' })), PW2, 'password')
  end)

  T.test('the value must be a JSON string: missing_key otherwise', function()
    fails('missing_key', { 'port' }, ks('smtp-auth/example.com', { vault_key = 'port' }))
    fails('missing_key', { 'nope' }, ks('smtp-auth/example.com', { vault_key = 'nope' }))
  end)

  T.test('not_found names mount and path', function()
    fails('not_found', { 'secret', 'smtp-auth/nowhere.example' }, ks('smtp-auth/nowhere.example'))
  end)

  T.test('KV v1 with vault_kv_version = 1 and "auto"', function()
    local k = { vault_mount = 'kv', vault_path = 'smtp-auth/v1.example', vault_key = 'password' }
    k.vault_kv_version = 1
    T.same_secret(vks.resolve(k), PW3, 'kv v1')
    k.vault_kv_version = 'auto'
    T.same_secret(vks.resolve(k), PW3, 'kv auto on a v1 mount')
    T.same_secret(vks.resolve(ks('smtp-auth/example.com', { vault_kv_version = 'auto' })), PW1,
      'kv auto on a v2 mount')
    -- KumoMTA reads only KV v2: on a v1 mount the v2 path does not exist
    k.vault_kv_version = nil
    fails('not_found', { 'kv' }, k)
  end)

  T.test('setup kv_version is the default for keysources without vault_kv_version', function()
    setup { kv_version = 'auto' }
    T.same_secret(vks.resolve({ vault_mount = 'kv', vault_path = 'smtp-auth/v1.example', vault_key = 'password' }),
      PW3, 'auto by default')
    setup()
  end)

  T.test('vault_version pins a KV v2 version', function()
    vd:kv2_put('smtp-auth/rotated.example', { key = PW_OLD })
    vd:kv2_put('smtp-auth/rotated.example', { key = PW_NEW })
    T.same_secret(vks.resolve(ks('smtp-auth/rotated.example')), PW_NEW, 'latest')
    T.same_secret(vks.resolve(ks('smtp-auth/rotated.example', { vault_version = 1 })), PW_OLD, 'version 1')
    fails('not_found', { 'smtp-auth/rotated.example' }, ks('smtp-auth/rotated.example', { vault_version = 9 }))
  end)

  T.test('deleted and destroyed versions are told from not found', function()
    vd:kv2_put('smtp-auth/gone.example', { key = PW_OLD })
    vd:kv2_put('smtp-auth/gone.example', { key = PW_NEW })
    vd:kv2_destroy('smtp-auth/gone.example', { 1 })
    vd:kv2_delete('smtp-auth/gone.example')
    fails('deleted', { 'smtp-auth/gone.example' }, ks('smtp-auth/gone.example'))
    fails('destroyed', { 'smtp-auth/gone.example' }, ks('smtp-auth/gone.example', { vault_version = 1 }))
  end)

  T.test('permission_denied for a token whose policy does not cover the path', function()
    vd:policy('only-allowed', 'path "secret/data/allowed/*" { capabilities = ["read"] }')
    local tok = vd:create_token { policies = { 'only-allowed' }, ttl = '1h' }
    vd:kv2_put('allowed/a', { key = PW1 })
    T.same_secret(vks.resolve(ks('allowed/a', { vault_token = tok })), PW1, 'own token, allowed path')
    local msg = fails('permission_denied', { 'smtp-auth/example.com' },
      ks('smtp-auth/example.com', { vault_token = tok }))
    T.not_contains(msg, tok, 'message')
  end)

  T.test('a revoked token fails at once', function()
    local tok = vd:create_token { policies = { 'only-allowed' }, ttl = '1h' }
    T.same_secret(vks.resolve(ks('allowed/a', { vault_token = tok })), PW1, 'before revocation')
    vd:call('POST', '/v1/auth/token/revoke', { token = tok })
    local code = select(3, vks.resolve(ks('allowed/a', { vault_token = tok })))
    T.ok(code == 'permission_denied' or code == 'auth_failed', 'revoked token refused, got ' .. tostring(code))
  end)

  T.test('vault_address and vault_token in the keysource override the configuration', function()
    vks.setup { ca_cert = vd.cacert, timeout = '5s' } -- no address, no token
    fails('bad_keysource', { 'vault_address was not specified' }, ks('smtp-auth/example.com'))
    T.same_secret(vks.resolve(ks('smtp-auth/example.com', { vault_address = vd.addr, vault_token = vd.root_token })),
      PW1, 'keysource address and token')
    local code = select(3, vks.resolve(ks('smtp-auth/example.com', { vault_address = vd.addr })))
    T.eq(code, 'auth_failed', 'address but no token anywhere')
    setup()
  end)

  T.test('restrictions in custom_metadata are checked against ctx', function()
    vd:kv2_put('smtp-auth/restricted.example', { key = PW2 })
    vd:call('POST', '/v1/secret/metadata/smtp-auth/restricted.example',
      { custom_metadata = { allowed_domains = 'restricted.example, *.restricted.example' } })
    local k = ks('smtp-auth/restricted.example')
    T.same_secret(vks.resolve(k, { domain = 'mx.restricted.example' }), PW2, 'allowed domain')
    fails('restricted', { 'smtp-auth/restricted.example', 'other.example' }, k, { domain = 'other.example' })
    fails('restricted', { 'smtp-auth/restricted.example' }, k)
  end)

  T.test('sealed Vault: sealed (after the retries), then works again', function()
    vd:seal()
    fails('sealed', { 'secret' }, ks('smtp-auth/example.com'))
    vd:unseal()
    T.same_secret(vks.resolve(ks('smtp-auth/example.com')), PW1, 'after unseal')
  end)

  T.test('5xx and 429 are retried: a short burst is absorbed', function()
    vd:fault { action = 'status', status = 503, path_prefix = '/v1/secret/data/smtp-auth/example.com', count = 1 }
    vd:fault { action = 'status', status = 429, path_prefix = '/v1/secret/data/smtp-auth/example.com', count = 1 }
    vd:reset_counters()
    T.same_secret(vks.resolve(ks('smtp-auth/example.com')), PW1, 'after two retried failures')
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/example.com'), 3, 'requests made')
    vd:clear_faults()
  end)

  T.test('persistent 500, 429 and 412 give unavailable', function()
    for _, status in ipairs { 500, 429, 412 } do
      vd:fault { action = 'status', status = status, path_prefix = '/v1/secret/data/', count = 10 }
      fails('unavailable', { 'smtp-auth/example.com' }, ks('smtp-auth/example.com'))
      vd:clear_faults()
    end
  end)

  T.test('a 403 from Vault is permission_denied', function()
    vd:fault { action = 'status', status = 403, body = { errors = { 'permission denied' } },
      path_prefix = '/v1/secret/data/', count = 1 }
    fails('permission_denied', { 'smtp-auth/example.com' }, ks('smtp-auth/example.com'))
    vd:clear_faults()
  end)

  T.test('a 404 with no body detail is not_found', function()
    vd:fault { action = 'status', status = 404, body = { errors = {} }, path_prefix = '/v1/secret/data/', count = 1 }
    fails('not_found', { 'smtp-auth/example.com' }, ks('smtp-auth/example.com'))
    vd:clear_faults()
  end)

  T.test('malformed, truncated, oversized and non-JSON answers are bad_response', function()
    for _, f in ipairs {
      { action = 'non_json' },
      { action = 'status', status = 200, body = '{"data": {"data": {"key": ' },
      { action = 'oversized', size = 2 * 1024 * 1024 },
      { action = 'truncate' },
    } do
      f.path_prefix = '/v1/secret/data/'
      f.count = 10
      vd:fault(f)
      local _, msg, code = vks.resolve(ks('smtp-auth/example.com'))
      T.ok(code == 'bad_response' or (f.action == 'truncate' and code == 'unavailable'),
        f.action .. ': got ' .. tostring(code) .. ' ' .. tostring(msg))
      vd:clear_faults()
    end
  end)

  T.test('connection closed without an answer, then Vault down: unavailable', function()
    vd:fault { action = 'close', path_prefix = '/v1/secret/data/', count = 10 }
    fails('unavailable', { 'smtp-auth/example.com' }, ks('smtp-auth/example.com'))
    vd:clear_faults()
    -- a port where nothing listens (the server's port + nothing: use a closed local port)
    local dead = vd.addr:gsub(':%d+$', ':1')
    fails('unavailable', {}, ks('smtp-auth/example.com', { vault_address = dead }))
  end)

  T.test('the overall deadline gives timeout', function()
    setup { timeout = '1s' }
    vd:fault { action = 'latency', latency_ms = 3000, path_prefix = '/v1/secret/data/', count = 5 }
    fails('timeout', { 'smtp-auth/example.com' }, ks('smtp-auth/example.com'))
    vd:clear_faults()
    setup()
  end)

  T.test('a certificate not signed by the configured CA is tls', function()
    -- system CAs only: vault-dev's own CA is not among them
    vks.setup { address = vd.addr, token = vd.root_token, timeout = '5s', max_retries = 0 }
    fails('tls', { 'certificate' }, ks('smtp-auth/example.com'))
    fails('tls', { 'certificate' }, ks('smtp-auth/example.com', { vault_token = vd.root_token }))
    setup()
  end)

  T.test('a 307 to another node (standby to active) is refused: the token stays home', function()
    standby = vaultdev.start { tls = true, args = { '--tls-dir', vd.workdir .. '/tls', '--standby-of', vd.addr } }
    vd:reset_counters()
    fails('unavailable', { 'refused', standby.addr, vd.addr },
          ks('smtp-auth/example.com', { vault_address = standby.addr }))
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/example.com'), 0, 'the active node got no read')
  end)

  T.test('a redirect from https to http is refused with unavailable', function()
    plain = vaultdev.start { tls = false }
    local redir = vaultdev.start { tls = true, args = { '--tls-dir', vd.workdir .. '/tls', '--standby-of', plain.addr } }
    local ok2, e2 = pcall(fails, 'unavailable', { 'downgrade' }, ks('smtp-auth/example.com', { vault_address = redir.addr }))
    redir:stop()
    if not ok2 then error(e2, 0) end
  end)

  T.test('setup with the same options is a no-op; changed options apply at once', function()
    local _, changed = setup()
    T.eq(changed, false, 'same options')
    _, changed = setup { kv_version = 1 }
    T.eq(changed, true, 'changed')
    fails('not_found', {}, ks('smtp-auth/example.com')) -- v1 read of a v2 mount
    setup()
    T.same_secret(vks.resolve(ks('smtp-auth/example.com')), PW1, 'back')
  end)

  T.test('setup with an unusable CA file raises and changes nothing', function()
    T.raises('ca', vks.setup, { address = vd.addr, token = vd.root_token, ca_cert = '/nonexistent/ca.pem' })
    T.same_secret(vks.resolve(ks('smtp-auth/example.com')), PW1, 'old runtime still in force')
  end)
end)
if standby then standby:stop() end
if plain then plain:stop() end
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
