-- Exactly one audit event per vks.resolve call, whatever the outcome, with the fields the lookup
-- knows (and never the value); a lookup that cannot be audited under policy deny fails with
-- audit_unavailable and returns no value.
local T = require 'testlib'
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
T.reexec { VKS_AUDIT_FILE = WORK .. '/audit.jsonl', VKS_CACHE_TTL = '300', VAULT_ADDR = false,
  VAULT_TOKEN = false, HOME = WORK, VKS_AUDIT_ON_FAILURE = 'deny',
  VKS_AUDIT_KEY = 'cmVzb2x2ZXItYXVkaXQta2V5LUxVQTM0LTAxMjM0NTY=' } -- resolver-audit-key-LUA34-0123456
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'relay-pw-LUA34-audited-6b2f'
local KD = 'keydata-LUA34-audited-91ce'

local function audit_lines()
  local lines = {}
  local f = io.open(WORK .. '/audit.jsonl', 'rb')
  if not f then return lines end
  for l in f:lines() do
    if l:find('"outcome":', 1, true) then lines[#lines + 1] = l end
  end
  f:close()
  return lines
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s' }
  vd:kv2_put('smtp-auth/a34', { key = PW })
  vd:kv2_put('smtp-auth/r34', { key = PW })
  vd:call('POST', '/v1/secret/metadata/smtp-auth/r34', { custom_metadata = { allowed_domains = 'ok.example' } })
  local file = T.write_file(WORK .. '/pw34', PW)
  vks.set_event_handler(function() return PW end)
  local ctx = { domain = 'ok.example', site_name = 'mx.ok.example', username = 'relay-user',
    destination = '192.0.2.7:587', tag = 'egress-34' }

  local calls = {
    { 'file ok', function() return vks.resolve(file, ctx) end },
    { 'key_data ok', function() return vks.resolve({ key_data = KD }) end },
    { 'bad keysource', function() return vks.resolve({ vault_mount = 'secret' }) end },
    { 'vault miss', function() return vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/a34' }, ctx) end },
    { 'vault hit', function() return vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/a34' }, ctx) end },
    { 'not found', function() return vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/none34' }) end },
    { 'restricted', function() return vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/r34' },
      { domain = 'other.example' }) end },
    { 'event', function() return vks.resolve({ event_name = 'pw34', event_args = {} }) end },
    { 'missing file', function() return vks.resolve(WORK .. '/missing34') end },
  }

  T.test('one audit line per call, none for misuse', function()
    local before = #audit_lines()
    for _, c in ipairs(calls) do c[2]() end
    pcall(vks.resolve, 42) -- misuse raises and is not a lookup
    local lines = audit_lines()
    T.eq(#lines - before, #calls, 'audit lines for ' .. #calls .. ' calls')
  end)

  T.test('each line says what happened', function()
    local lines = audit_lines()
    local n = #lines
    local function line(i) return lines[n - #calls + i] end
    local want = {
      { '"outcome":"miss"', '"result":"success"', '"source":"file"', '"domain":"ok.example"', '"tag":"egress-34"' },
      { '"source":"key_data"', '"result":"success"' },
      { '"code":"bad_keysource"', '"result":"failure"', 'no vault_path' },
      { '"outcome":"miss"', '"source":"vault"', '"mount":"secret"', '"path":"smtp-auth/a34"', '"kv_version":2' },
      { '"outcome":"hit"', '"cached":true' },
      { '"code":"not_found"', '"path":"smtp-auth/none34"' },
      { '"outcome":"denied"', '"code":"restricted"', '"domain":"other.example"' },
      { '"source":"event"', '"event_name":"pw34"', '"result":"success"' },
      { '"code":"file_error"', 'missing34' },
    }
    for i, parts in ipairs(want) do
      for _, p in ipairs(parts) do T.contains(line(i), p, calls[i][1]) end
      T.not_contains(line(i), PW, calls[i][1])
      T.not_contains(line(i), KD, calls[i][1])
    end
    -- a fingerprint for successes, none for failures
    T.ok(line(1):find('"fp":"%x+"'), 'fingerprint of a value')
    T.contains(line(3), '"fp":null', 'no fingerprint without a value')
    -- the same value gives the same fingerprint (file and vault hold the same password)
    T.eq(line(1):match('"fp":"(%x+)"'), line(4):match('"fp":"(%x+)"'), 'fingerprints of equal values')
  end)

  T.test('policy deny: a lookup that cannot be audited fails and returns no value', function()
    local child = T.write_file(WORK .. '/child34.lua', [[
      local vks = require 'vault_keysource'
      local v, msg, code = vks.resolve({ key_data = ']] .. KD .. [[' })
      print(v == nil and ('CHILD ' .. tostring(code)) or 'CHILD GOT A VALUE', msg)
    ]])
    local p = io.popen(string.format('env VKS_AUDIT_FILE=/proc/version VKS_AUDIT_ON_FAILURE=deny lua5.4 %s 2>&1',
      T.shq(child)))
    local out = p:read('a')
    p:close()
    T.contains(out, 'CHILD audit_unavailable', 'refused')
    T.contains(out, 'key_data', 'message names the keysource')
    p = io.popen(string.format('env VKS_AUDIT_FILE=/proc/version VKS_AUDIT_ON_FAILURE=allow lua5.4 %s 2>&1',
      T.shq(child)))
    out = p:read('a')
    p:close()
    T.contains(out, 'CHILD GOT A VALUE', 'policy allow serves the value')
  end)
end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
