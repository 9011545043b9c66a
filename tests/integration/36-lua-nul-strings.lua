-- Embedded NUL bytes in strings crossing from Lua to C: every string the C side reads is taken
-- with its length, and a NUL is a clear error naming the field, never a truncation. Runtime
-- input (ctx fields, keysource fields and names) fails with bad_keysource; setup misuse raises.
-- Binary values (key_data) keep their NUL bytes. Against vault-dev over HTTPS, with the audit
-- file read back: a refused ctx is audited as a failure without the truncated value.
local T = require 'testlib'
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
T.reexec { VKS_AUDIT_FILE = WORK .. '/audit36.jsonl', VKS_CACHE_TTL = '0', VAULT_ADDR = false,
  VAULT_TOKEN = false, HOME = WORK, VKS_AUDIT_KEY = false, VKS_AUDIT_KEY_FILE = false }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'relay-pw-LUA36-nul-3d9a71'
local KD = 'keydata-LUA36-nul-c04e2b'

local function last_audit_line()
  local last
  local f = io.open(WORK .. '/audit36.jsonl', 'rb')
  if not f then return nil end
  for l in f:lines() do
    if l:find('"outcome":', 1, true) then last = l end
  end
  f:close()
  return last
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local base = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s' }
  vks.setup(base)
  vd:kv2_put('smtp-auth/n36', { key = PW, password = PW })
  vd:call('POST', '/v1/secret/metadata/smtp-auth/n36',
    { custom_metadata = { allowed_domains = 'good.example', allowed_hosts = '192.0.2.7' } })
  local ks = { vault_mount = 'secret', vault_path = 'smtp-auth/n36' }
  local good = { domain = 'good.example', destination = '192.0.2.7:587' }

  T.test('the restricted secret is served to the allowed ctx (the baseline)', function()
    T.same_secret(vks.resolve(ks, good), PW, 'allowed ctx')
    T.fails('restricted', {}, vks.resolve, ks, { domain = 'evil.example', destination = '192.0.2.7:587' })
  end)

  T.test('ctx.domain with a NUL never passes allowed_domains and is not audited truncated', function()
    local msg = T.fails('bad_keysource', { 'ctx.domain', 'NUL' }, vks.resolve, ks,
      { domain = 'good.example\0evil', destination = '192.0.2.7:587' })
    T.not_contains(msg, 'evil', 'message shows only the part before the NUL')
    local line = last_audit_line()
    T.ok(line ~= nil, 'an audit line was written')
    T.contains(line, 'bad_keysource', 'the audit line records the failure')
    T.contains(line, 'ctx.domain', 'the audit line says why')
    T.not_contains(line, '"domain":"good.example"', 'the truncated domain is not recorded as the domain')
    T.contains(line, '192.0.2.7:587', 'the other ctx fields are recorded')
  end)

  T.test('ctx.destination with a NUL never passes allowed_hosts', function()
    T.fails('bad_keysource', { 'ctx.destination', 'NUL' }, vks.resolve, ks,
      { domain = 'good.example', destination = '192.0.2.7\0:25' })
    T.fails('bad_keysource', { 'ctx.destination' }, vks.resolve, ks,
      { domain = 'good.example', destination = '\0' })
  end)

  T.test('every ctx field: a NUL is bad_keysource naming the field, even for key_data', function()
    for _, f in ipairs { 'domain', 'site_name', 'username', 'destination', 'tag' } do
      local ctx = { [f] = 'x\0y' }
      T.fails('bad_keysource', { 'ctx.' .. f, 'NUL' }, vks.resolve, { key_data = KD }, ctx)
      T.fails('bad_keysource', { 'ctx.' .. f }, vks.resolve_handle, { key_data = KD }, ctx)
    end
    -- misuse still raises (a ctx field that is not a string)
    T.raises('ctx.tag must be a string', vks.resolve, { key_data = KD }, { tag = 7 })
  end)

  T.test('Vault keysource fields with a NUL: bad_keysource naming the field, nothing fetched', function()
    vd:reset_counters()
    local cases = {
      { 'vault_path', { vault_mount = 'secret', vault_path = 'smtp-auth/n36\0/../x' } },
      { 'vault_mount', { vault_mount = 'secret\0x', vault_path = 'smtp-auth/n36' } },
      { 'vault_key', { vault_mount = 'secret', vault_path = 'smtp-auth/n36', vault_key = 'key\0password' } },
      { 'vault_namespace', { vault_mount = 'secret', vault_path = 'smtp-auth/n36', vault_namespace = 'ns\0x' } },
      { 'vault_address', { vault_mount = 'secret', vault_path = 'smtp-auth/n36', vault_address = vd.addr .. '\0.evil' } },
      { 'vault_kv_version', { vault_mount = 'secret', vault_path = 'smtp-auth/n36', vault_kv_version = '2\0' } },
      { 'vault_version', { vault_mount = 'secret', vault_path = 'smtp-auth/n36', vault_version = '1\0' } },
    }
    for _, c in ipairs(cases) do
      T.fails('bad_keysource', { c[1] }, vks.resolve, c[2], good)
    end
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/n36'), 0, 'no request reached Vault')
  end)

  T.test('a keysource field NAME with a NUL is refused, not read as the shorter name', function()
    -- 'vault_path\0x' would otherwise be read as a second vault_path
    T.fails('bad_keysource', { 'keysource field name', 'NUL' }, vks.resolve,
      { vault_mount = 'secret', vault_path = 'smtp-auth/n36', ['vault_key\0x'] = 'password' }, good)
    T.fails('bad_keysource', { 'keysource field name' }, vks.resolve,
      { ['key_data\0'] = KD, vault_mount = 'secret', vault_path = 'smtp-auth/n36' }, good)
    T.fails('bad_keysource', { 'keysource field name' }, vks.invalidate,
      { vault_mount = 'secret', ['vault_path\0'] = 'x', vault_path = 'smtp-auth/n36' })
  end)

  T.test('event_name with a NUL is refused', function()
    vks.set_event_handler(function() return PW end)
    T.fails('bad_keysource', { 'event_name' }, vks.resolve, { event_name = 'pw\0x', event_args = {} })
  end)

  T.test('an event handler code with a NUL is no code (the default not_found)', function()
    vks.set_event_handler(function() return nil, 'no', 'permission_denied\0x' end)
    T.fails('not_found', {}, vks.resolve, { event_name = 'pw', event_args = {} })
    vks.set_event_handler(function() return nil, 'no', 'permission_denied' end)
    T.fails('permission_denied', {}, vks.resolve, { event_name = 'pw', event_args = {} })
    vks.set_event_handler(nil)
  end)

  T.test('a file keysource path with a NUL is refused, not read as the shorter path', function()
    local f = T.write_file(WORK .. '/pw36', PW)
    T.fails('bad_keysource', { 'file path', 'NUL' }, vks.resolve, f .. '\0.other')
    T.same_secret(vks.resolve(f), PW, 'the path itself still works')
  end)

  T.test('key_data is binary: NUL bytes are kept, never an error', function()
    local bin = KD .. '\0' .. KD
    T.same_secret(vks.resolve({ key_data = bin }, good), bin, 'binary key_data')
    local h = assert(vks.resolve_handle({ key_data = '\0' }))
    T.eq(h:len(), 1, 'one NUL byte')
    h:close()
  end)

  local function setup_raises(part, extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return T.raises(part, vks.setup, o)
  end

  T.test('setup options naming files, modes and addresses: a NUL raises naming the option', function()
    setup_raises('address', { address = vd.addr .. '\0.evil' })
    setup_raises('namespace', { namespace = 'team\0x' })
    setup_raises('ca_cert', { ca_cert = vd.cacert .. '\0.x' })
    setup_raises('secret_id_file', { auth = 'approle', role_id = 'r', secret_id_file = WORK .. '/sid\0x' })
    setup_raises('approle_mount', { auth = 'approle', role_id = 'r', secret_id = 's', approle_mount = 'ar\0x' })
    setup_raises('tls_server_name', { tls_server_name = 'vault\0.example' })
    setup_raises('auth', { auth = 'token\0' })
    setup_raises('timeout', { timeout = '5s\0' })
    setup_raises('kv_version', { kv_version = '2\0' })
    setup_raises('audit.file', { audit = { file = WORK .. '/a36.jsonl\0.x' } })
    setup_raises('audit.key_file', { audit = { file = WORK .. '/a36.jsonl', key_file = WORK .. '/k\0' } })
    setup_raises('audit.mode', { audit = { mode = 'sync\0x' } })
    setup_raises('audit.on_failure', { audit = { on_failure = 'allow\0' } })
    setup_raises('audit.syslog.socket', { audit = { syslog = { socket = '/dev/log\0x' } } })
    setup_raises('audit.syslog.facility', { audit = { syslog = { facility = 'mail\0x' } } })
    setup_raises('audit.syslog.ident', { audit = { syslog = { ident = 'vks\0x' } } })
    setup_raises('cache.ttl', { cache = { ttl = '5s\0' } })
    setup_raises('cache.capacity', { cache = { capacity = '10\0' } })
  end)

  T.test('setup option NAMES with a NUL raise (never read as the shorter name)', function()
    local msg = setup_raises('setup option name', { ['address\0x'] = vd.addr })
    T.contains(msg, 'NUL', 'says why')
    setup_raises('setup option cache', { cache = { ['ttl\0x'] = 5 } })
    setup_raises('setup option audit', { audit = { ['file\0x'] = WORK .. '/x' } })
    setup_raises('audit.syslog', { audit = { syslog = { ['socket\0'] = '/dev/log' } } })
  end)

  T.test('the policy host builtins refuse a NUL too (sys, json, toml, smtp)', function()
    local script = T.write_file(WORK .. '/host36.lua', [[
local smtp = require 'vks_host.smtp'
local sys = require 'vks_host.sys'
local json = require 'vks_host.json'
local toml = require 'vks_host.toml'
local function r(label, f, ...)
  local okk, e = pcall(f, ...)
  print(label .. '=' .. (okk and 'accepted' or tostring(e)))
end
r('host', smtp.check_auth, { host = '127.0.0.1\0evil', port = 1, timeout_ms = 500 })
r('ehlo_name', smtp.check_auth, { host = '127.0.0.1', port = 1, ehlo_name = 'x\0y', timeout_ms = 500 })
r('enable_tls', smtp.check_auth, { host = '127.0.0.1', port = 1, enable_tls = 'Disabled\0x', timeout_ms = 500 })
r('cafile', smtp.check_auth, { host = '127.0.0.1', port = 1, cafile = '/etc/ssl/x\0y', timeout_ms = 500 })
r('username', smtp.check_auth, { host = '127.0.0.1', port = 1, username = 'u\0x', password = 'p', timeout_ms = 500 })
r('file_exists', sys.file_exists, '/etc/passwd\0x')
r('realpath', sys.realpath, '/etc\0x')
r('json', json.parse, '{}', 'src\0x')
r('toml', toml.parse, 'a = 1', 'src\0x')
return 0
]])
    local root, build = os.getenv('ROOT'), os.getenv('BUILD') or 'build'
    local p = assert(io.popen(string.format("%s/%s/vks-policy --script %s 2>&1", root, build, script)))
    local outp = p:read('a')
    p:close()
    for _, f in ipairs { 'host', 'ehlo_name', 'enable_tls', 'cafile', 'username', 'file_exists', 'realpath',
      'json', 'toml' } do
      local line = outp:match('\n?' .. f .. '=([^\n]*)') or '(no line)'
      T.contains(line, 'contains a NUL byte', f)
    end
  end)

  T.test('after all of that the configuration in force still serves', function()
    T.same_secret(vks.resolve(ks, good), PW, 'still served')
  end)
end)
if not ok then
  T.test('suite setup', function() error(err, 0) end)
end
vd:stop()
os.exit(T.done())
