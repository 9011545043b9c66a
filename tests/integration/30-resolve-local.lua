-- vks.resolve for the keysource forms that need no Vault (file, key_data, event), misuse that
-- raises, malformed keysources (bad_keysource naming the field), and setup semantics.
local T = require 'testlib'
local vks = require 'vault_keysource'

local work = T.workdir()
local FILE_SECRET = 'file-secret-LUA-3e8b1c0d'
local KEYDATA = 'keydata-LUA-7a2f44e1'
local EVENT_SECRET = 'event-secret-LUA-c51d09aa'

local secret_file = T.write_file(work .. '/relay.pw', FILE_SECRET)

T.test('module loads once per state and has its functions', function()
  T.eq(type(vks.resolve), 'function', 'resolve')
  T.eq(type(vks.setup), 'function', 'setup')
  T.eq(type(vks.set_event_handler), 'function', 'set_event_handler')
  T.ok(package.loaded.vault_keysource == vks, 'require caches the module')
end)

T.test('a string keysource is a file path (KumoMTA), bytes returned as they are', function()
  T.same_secret(vks.resolve(secret_file), FILE_SECRET, 'file value')
  local nl = T.write_file(work .. '/nl.pw', FILE_SECRET .. '\n')
  T.same_secret(vks.resolve(nl), FILE_SECRET .. '\n', 'trailing newline kept like KumoMTA')
  local empty = T.write_file(work .. '/empty.pw', '')
  T.eq(vks.resolve(empty), '', 'empty file')
end)

T.test('missing, unreadable and oversized files fail with file_error naming the file', function()
  T.fails('file_error', { work .. '/nope.pw', 'No such file' }, vks.resolve, work .. '/nope.pw')
  T.fails('file_error', { work, 'not a regular file' }, vks.resolve, work)
  local big = T.write_file(work .. '/big.pw', string.rep('x', 5000))
  T.fails('file_error', { 'big.pw', 'larger than 4096' }, vks.resolve, big)
end)

T.test('key_data wins over every other field and may be binary', function()
  T.same_secret(vks.resolve({ key_data = KEYDATA }), KEYDATA, 'key_data')
  T.same_secret(vks.resolve({ key_data = KEYDATA, vault_mount = 'secret', vault_path = 'x' }), KEYDATA,
    'key_data before vault')
  local bin = '\0\1\2' .. KEYDATA .. '\255'
  T.same_secret(vks.resolve({ key_data = bin }), bin, 'binary key_data')
end)

T.test('malformed keysources return bad_keysource naming the field', function()
  T.fails('bad_keysource', { 'vault_mount but no vault_path' }, vks.resolve, { vault_mount = 'secret' })
  T.fails('bad_keysource', { 'vault_kye' }, vks.resolve,
    { vault_mount = 'secret', vault_path = 'a', vault_kye = 'password' })
  T.fails('bad_keysource', { 'key_data must be a string' }, vks.resolve, { key_data = 42 })
  T.fails('bad_keysource', { 'vault_path', "'..'" }, vks.resolve,
    { vault_mount = 'secret', vault_path = '../sys/seal-status' })
  T.fails('bad_keysource', { 'matches no form' }, vks.resolve, {})
  T.fails('bad_keysource', { 'vault_address', 'http:// or https://' }, vks.resolve,
    { vault_mount = 'secret', vault_path = 'a', vault_address = 'vault.example:8200' })
  T.fails('bad_keysource', { 'event_args' }, vks.resolve, { event_name = 'x' })
  -- unknown keys that do not start with vault_ are ignored, like KumoMTA
  T.same_secret(vks.resolve({ key_data = KEYDATA, comment = 'relay for example.com' }), KEYDATA, 'extra key')
end)

T.test('a token in a malformed keysource never reaches the message', function()
  local msg = T.fails('bad_keysource', { 'vault_kv_version' }, vks.resolve,
    { vault_mount = 'secret', vault_path = 'a', vault_token = 'tok-LUA-b7e2a9d04c', vault_kv_version = 7 })
  T.not_contains(msg, 'tok-LUA-b7e2a9d04c', 'message')
end)

T.test('misuse raises before anything happens', function()
  T.raises('keysource', vks.resolve, 42)
  T.raises('keysource', vks.resolve)
  T.raises('keysource', vks.resolve, true)
  T.raises('ctx', vks.resolve, { key_data = KEYDATA }, 'example.com')
  T.raises('ctx.domain must be a string', vks.resolve, { key_data = KEYDATA }, { domain = 5 })
  T.raises('function or nil', vks.set_event_handler, 'handler')
  T.raises('setup options', vks.setup, 'https://127.0.0.1:8200')
end)

T.test('a ctx table is accepted with every field', function()
  T.same_secret(vks.resolve({ key_data = KEYDATA },
    { domain = 'example.com', site_name = 'mx.example.com', username = 'relay-user',
      destination = '192.0.2.1:587', tag = 'egress-a' }), KEYDATA, 'with ctx')
end)

T.test('event keysources call the handler registered in this state', function()
  T.fails('bad_keysource', { 'no event handler' }, vks.resolve, { event_name = 'get_pw', event_args = {} })
  local seen
  vks.set_event_handler(function(name, args)
    seen = { name = name, n = #args, first = args[1] }
    if args[1] == 'missing' then return nil, 'nothing here', 'not_found' end
    if args[1] == 'boom' then error('handler exploded with ' .. EVENT_SECRET) end
    if args[1] == 'number' then return 42 end
    return EVENT_SECRET
  end)
  T.same_secret(vks.resolve({ event_name = 'get_pw', event_args = { 'example.com', 2 } }), EVENT_SECRET, 'event')
  T.eq(seen.name, 'get_pw', 'handler got the event name')
  T.eq(seen.n, 2, 'handler got the args')
  T.eq(seen.first, 'example.com', 'first arg')
  T.fails('not_found', { 'event "get_pw"' }, vks.resolve, { event_name = 'get_pw', event_args = { 'missing' } })
  local msg = T.fails('unavailable', { 'event "get_pw"', 'raised' }, vks.resolve,
    { event_name = 'get_pw', event_args = { 'boom' } })
  T.not_contains(msg, EVENT_SECRET, 'handler error text is not repeated')
  T.fails('bad_response', { 'number' }, vks.resolve, { event_name = 'get_pw', event_args = { 'number' } })
  vks.set_event_handler(nil)
  T.fails('bad_keysource', { 'no event handler' }, vks.resolve, { event_name = 'get_pw', event_args = {} })
end)

T.test('vault keysource without any address fails like KumoMTA, naming the keysource', function()
  -- tests/run does not set VAULT_ADDR for this suite
  if os.getenv('VAULT_ADDR') then return end
  T.fails('bad_keysource', { 'vault_address was not specified', 'mount "secret"', 'path "smtp-auth/a"' },
    vks.resolve, { vault_mount = 'secret', vault_path = 'smtp-auth/a' })
end)

T.test('setup: same options again is a no-op, changed options apply', function()
  local ok, changed = vks.setup({ kv_version = 2 })
  T.eq(ok, true, 'setup returns true')
  ok, changed = vks.setup({ kv_version = 2 })
  T.eq(changed, false, 'same options: no-op')
  ok, changed = vks.setup({ kv_version = 1 })
  T.eq(changed, true, 'changed options')
  ok, changed = vks.setup({ kv_version = 1 })
  T.eq(changed, false, 'same again')
end)

T.test('setup: invalid options raise naming the option', function()
  T.raises('unknown setup option adress', vks.setup, { adress = 'https://127.0.0.1:8200' })
  T.raises('timeout', vks.setup, { timeout = 'soon' })
  T.raises('allow_http', vks.setup, { address = 'http://vault.example:8200' })
  T.raises('kv_version', vks.setup, { kv_version = 3 })
  T.raises('names must be strings', vks.setup, { 'https://127.0.0.1:8200' })
  local err = T.raises('token', vks.setup, { token = 'tok-LUA-b7e2a9d04c\n' })
  T.not_contains(err, 'tok-LUA-b7e2a9d04c', 'setup error')
  -- a failed setup changed nothing
  local _, changed = vks.setup({ kv_version = 1 })
  T.eq(changed, false, 'failed setups left the config alone')
end)

T.test('require_encrypted refuses plaintext values with not_encrypted', function()
  vks.setup({ require_encrypted = true })
  T.fails('not_encrypted', { 'key_data', 'require_encrypted' }, vks.resolve, { key_data = KEYDATA })
  T.fails('not_encrypted', { 'relay.pw' }, vks.resolve, secret_file)
  vks.setup({ require_encrypted = false })
  T.same_secret(vks.resolve({ key_data = KEYDATA }), KEYDATA, 'plaintext allowed again')
end)

T.test('many Lua states share the runtime', function()
  -- a second require in a fresh environment is the same C module (the .so is pinned)
  package.loaded.vault_keysource = nil
  local vks2 = require 'vault_keysource'
  T.ok(vks2 ~= vks, 'a new module table')
  local _, changed = vks2.setup({ require_encrypted = false })
  T.eq(changed, false, 'the runtime set up through the first table is the one in force')
  T.same_secret(vks2.resolve(secret_file), FILE_SECRET, 'second table resolves')
end)

T.test('locked_memory when secrets cannot be locked and require_locked is set', function()
  if not os.execute('command -v capsh >/dev/null 2>&1') then return end -- scripts/bootstrap installs it
  local child = T.write_file(work .. '/locked.lua', [[
    local vks = require 'vault_keysource'
    local v, msg, code = vks.resolve({ key_data = ']] .. KEYDATA .. [[' })
    print(v == nil and ('CHILD ' .. tostring(code) .. ' ' .. tostring(msg)) or 'CHILD GOT A VALUE')
    local ok, err = pcall(vks.setup, { require_locked = true })
    print(ok and 'SETUP OK' or ('SETUP RAISED ' .. tostring(err)))
  ]])
  -- no CAP_IPC_LOCK and RLIMIT_MEMLOCK 0: the arena cannot be locked (root would hide the limit)
  local p = io.popen(string.format(
    "sh -c 'ulimit -l 0; VKS_REQUIRE_LOCKED=true capsh --drop=cap_ipc_lock -- -c \"lua5.4 %s\"' 2>/dev/null", child))
  local out = p:read('a')
  p:close()
  T.contains(out, 'CHILD locked_memory', 'resolve')
  T.contains(out, 'key_data', 'message names the field')
  T.contains(out, 'SETUP RAISED', 'setup{require_locked=true} raises')
  T.contains(out, 'RLIMIT_MEMLOCK', 'and says why')
end)

os.exit(T.done())
