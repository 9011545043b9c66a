-- The cache as vks.resolve uses it: one Vault read for repeated lookups, restrictions checked on
-- every hit (a refused hit wipes the cached value), a keysource's own token never served a value fetched with another token, setup
-- changes flush, files and key_data never cached.
local T = require 'testlib'
T.reexec { VKS_CACHE_TTL = '300', VAULT_ADDR = false, VAULT_TOKEN = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'relay-pw-LUA32-c0ffee1234'
local PW_R = 'relay-pw-LUA32-r3str1ct3d'
local FILE_A = 'file-pw-LUA32-aaaa111122'
local FILE_B = 'file-pw-LUA32-bbbb333344'

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local opts = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s' }
  vks.setup(opts)
  vd:kv2_put('smtp-auth/cached.example', { key = PW })
  local k = { vault_mount = 'secret', vault_path = 'smtp-auth/cached.example' }
  local path = '/v1/secret/data/smtp-auth/cached.example'

  T.test('repeated lookups read Vault once', function()
    vd:reset_counters()
    for _ = 1, 5 do T.same_secret(vks.resolve(k), PW, 'value') end
    T.eq(vd:count('GET', path), 1, 'Vault reads')
  end)

  T.test('restrictions are checked on cache hits too', function()
    vd:kv2_put('smtp-auth/r.example', { key = PW_R })
    vd:call('POST', '/v1/secret/metadata/smtp-auth/r.example', { custom_metadata = { allowed_domains = 'r.example' } })
    local r = { vault_mount = 'secret', vault_path = 'smtp-auth/r.example' }
    vd:reset_counters()
    T.same_secret(vks.resolve(r, { domain = 'r.example' }), PW_R, 'allowed')
    T.fails('restricted', { 'smtp-auth/r.example', 'other.example' }, vks.resolve, r, { domain = 'other.example' })
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/r.example'), 1, 'the refusal was a hit (no read)')
    -- the refusal wiped the cached value (issue 10 item 4): the allowed caller reads Vault again
    T.same_secret(vks.resolve(r, { domain = 'r.example' }), PW_R, 'allowed again')
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/r.example'), 2, 'read again after the refusal')
    T.same_secret(vks.resolve(r, { domain = 'r.example' }), PW_R, 'then a hit')
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/r.example'), 2, 'served from the cache')
  end)

  T.test("a keysource's own token is never served a value fetched with another token", function()
    vd:policy('nothing', 'path "secret/data/other/*" { capabilities = ["read"] }')
    local weak = vd:create_token { policies = { 'nothing' }, ttl = '1h' }
    T.same_secret(vks.resolve(k), PW, 'cached with the configured token')
    local kw = { vault_mount = 'secret', vault_path = 'smtp-auth/cached.example', vault_token = weak }
    local msg = T.fails('permission_denied', { 'smtp-auth/cached.example' }, vks.resolve, kw)
    T.not_contains(msg, weak, 'message')
  end)

  T.test('changed setup options flush the cache', function()
    vd:reset_counters()
    T.same_secret(vks.resolve(k), PW, 'hit')
    T.eq(vd:count('GET', path), 0, 'served from the cache')
    local _, changed = vks.setup(opts)
    T.eq(changed, false, 'same options')
    T.same_secret(vks.resolve(k), PW, 'still a hit')
    T.eq(vd:count('GET', path), 0, 'same options keep the cache')
    opts.timeout = '6s'
    _, changed = vks.setup(opts)
    T.eq(changed, true, 'changed options')
    T.same_secret(vks.resolve(k), PW, 'after the change')
    T.eq(vd:count('GET', path), 1, 'read again after the change')
  end)

  T.test('files are read on every lookup (never cached)', function()
    local f = T.write_file(T.workdir() .. '/pw32', FILE_A)
    T.same_secret(vks.resolve(f), FILE_A, 'first content')
    T.write_file(f, FILE_B)
    T.same_secret(vks.resolve(f), FILE_B, 'new content at once')
  end)
end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
