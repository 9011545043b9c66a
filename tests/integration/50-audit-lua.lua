-- The audit trail through the Lua module against vault-dev over HTTPS: every lookup kind (miss,
-- hit, refresh, stale, negative-cached, denied, error; resolve and resolve_handle; vault, file,
-- key_data) writes exactly one event with the right fields; the per-state callback gets the same
-- lines; no secret, token or key bytes in any sink; the chain verifies with `vks audit verify`;
-- deny / allow on a full disk.
local T = require 'testlib'
local KEY_B64 = 'QVVESVRLRVktVEVTVC01ZTFmMGM5YTc3ZDJiM2M0ZTg='
T.reexec { VKS_AUDIT_KEY = KEY_B64, VKS_AUDIT_KEY_FILE = false, VKS_AUDIT_FILE = false,
           VKS_AUDIT_MODE = false, VKS_AUDIT_ON_FAILURE = false, VAULT_ADDR = false,
           VAULT_TOKEN = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'relay-pw-AUDIT50-4f1e9a2b'
local PW_R = 'relay-pw-AUDIT50-restrict-77'
local FILE_PW = 'relay-pw-AUDIT50-file-5c3d'
local DATA_PW = 'relay-pw-AUDIT50-data-a1b2'
local KEY_RAW = 'AUDITKEY-TEST-5e1f0c9a77d2b3c4e8'
local work = T.workdir()
local log = work .. '/lua-audit.jsonl'
local cb_lines = {}

local function sleep(s) os.execute('sleep ' .. s) end
local function read_lines(path)
  local t = {}
  local f = io.open(path, 'rb')
  if not f then return t end
  for l in f:lines() do t[#t + 1] = l end
  f:close()
  return t
end
local function lookups(path)
  local t = {}
  for _, l in ipairs(read_lines(path or log)) do
    if l:find('"type":"secret.lookup"', 1, true) then t[#t + 1] = l end
  end
  return t
end
local function decode(l) return vaultdev.json_decode(l) end
local null = vaultdev.null

-- runs fn and returns the one lookup event it wrote (fails unless exactly one)
local function one_event(label, fn, ...)
  local before = #lookups()
  local r = table.pack(fn(...))
  local now = lookups()
  T.eq(#now - before, 1, label .. ': exactly one audit event')
  return decode(now[#now]), table.unpack(r, 1, r.n)
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local opts = {
    address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
    -- a long ttl first (a hit stays a hit however slow the machine); 1 s for refresh and stale
    cache = { ttl = 300, max_stale = 60, neg_ttl = 60, refresh = 1 },
    audit = { file = log, mode = 'sync', on_failure = 'deny', reopen_check_ms = 0,
              callback = function(line) cb_lines[#cb_lines + 1] = line end },
  }
  vks.setup(opts)
  vd:kv2_put('smtp-auth/example.com', { password = PW })
  local ks = { vault_mount = 'secret', vault_path = 'smtp-auth/example.com', vault_key = 'password' }
  local ctx = { domain = 'example.com', site_name = 'site-a', username = 'relay-user',
                destination = 'mx.example.com', tag = 'tag-1' }

  T.test('a miss then a hit: one event each, every field', function()
    local e1, v1 = one_event('miss', vks.resolve, ks, ctx)
    T.same_secret(v1, PW, 'value')
    local e2 = one_event('hit', vks.resolve, ks, ctx)
    T.eq(e1.outcome, 'miss', 'first outcome')
    T.eq(e2.outcome, 'hit', 'second outcome')
    for _, e in ipairs { e1, e2 } do
      T.eq(e.v, 1, 'schema')
      T.eq(e.type, 'secret.lookup', 'type')
      T.eq(e.api, 'resolve', 'api')
      T.eq(e.result, 'success', 'result')
      T.eq(e.code, 'ok', 'code')
      T.eq(e.source, 'vault', 'source')
      T.eq(e.vault_addr, vd.addr, 'vault_addr')
      T.eq(e.mount, 'secret', 'mount')
      T.eq(e.path, 'smtp-auth/example.com', 'path')
      T.eq(e.key, 'password', 'key')
      T.eq(e.kv_version, 2, 'kv_version')
      T.eq(e.secret_version, 1, 'secret_version')
      T.eq(e.ctx.domain, 'example.com', 'ctx.domain')
      T.eq(e.ctx.site_name, 'site-a', 'ctx.site_name')
      T.eq(e.ctx.username, 'relay-user', 'ctx.username')
      T.eq(e.ctx.destination, 'mx.example.com', 'ctx.destination')
      T.eq(e.ctx.tag, 'tag-1', 'ctx.tag')
      T.eq(e.encrypted, false, 'encrypted')
      T.eq(type(e.fp), 'string', 'fingerprint')
      T.eq(#e.fp, 32, 'fingerprint length')
      T.eq(type(e.ts), 'string', 'ts')
      T.ok(e.ts:match('^%d%d%d%d%-%d%d%-%d%dT%d%d:%d%d:%d%d%.%d%d%d%d%d%dZ$'), 'ts is RFC 3339 UTC with microseconds')
      T.eq(type(e.actor.pid), 'number', 'actor.pid')
      T.eq(type(e.latency_us), 'number', 'latency')
      T.ok(e.token_accessor == null or (type(e.token_accessor) == 'string' and
           not e.token_accessor:find(vd.root_token, 1, true)), 'accessor, never the token')
    end
    T.eq(e1.cached, false, 'miss not cached')
    T.eq(e2.cached, true, 'hit cached')
    T.eq(type(e2.cache_age_ms), 'number', 'cache age on a hit')
    T.eq(e1.fp, e2.fp, 'same value, same fingerprint')
    T.eq(e2.seq, e1.seq + 1, 'consecutive seqs')
    T.eq(e2.prev_mac, e1.mac, 'chained')
  end)

  T.test('resolve_handle writes one event too', function()
    local e, h = one_event('handle', vks.resolve_handle, ks, ctx)
    T.eq(e.api, 'resolve_handle', 'api')
    T.eq(e.outcome, 'hit', 'outcome')
    T.same_secret(h:reveal(), PW, 'value through the handle')
    h:close()
  end)

  T.test('rotation is visible in the fingerprint', function()
    local before = decode(lookups()[#lookups()]).fp
    vd:kv2_put('smtp-auth/example.com', { password = PW .. '-v2' })
    vks.invalidate(ks)
    local e = one_event('rotated', vks.resolve, ks, ctx)
    T.eq(e.secret_version, 2, 'new version')
    T.ok(e.fp ~= before, 'new fingerprint')
    vd:kv2_put('smtp-auth/example.com', { password = PW })
    vks.invalidate(ks)
    T.eq(one_event('back', vks.resolve, ks, ctx).fp, before, 'the old value has the old fingerprint')
  end)

  T.test('error then negative-cached for a missing secret', function()
    local missing = { vault_mount = 'secret', vault_path = 'smtp-auth/missing.example' }
    local e1, v1, _, code1 = one_event('not found', vks.resolve, missing, ctx)
    T.eq(v1, nil, 'no value')
    T.eq(code1, 'not_found', 'code')
    T.eq(e1.outcome, 'error', 'outcome')
    T.eq(e1.result, 'failure', 'result')
    T.eq(e1.code, 'not_found', 'event code')
    T.eq(e1.fp, null, 'no fingerprint without a value')
    T.eq(type(e1.error), 'string', 'error message')
    local e2 = one_event('negative', vks.resolve, missing, ctx)
    T.eq(e2.outcome, 'negative_cached', 'outcome')
    T.eq(e2.code, 'not_found', 'code')
  end)

  T.test('denied: restricted by custom_metadata', function()
    vd:kv2_put('smtp-auth/r.example', { key = PW_R })
    vd:call('POST', '/v1/secret/metadata/smtp-auth/r.example', { custom_metadata = { allowed_domains = 'r.example' } })
    local r = { vault_mount = 'secret', vault_path = 'smtp-auth/r.example' }
    local e, v, _, code = one_event('restricted', vks.resolve, r, { domain = 'other.example' })
    T.eq(v, nil, 'no value')
    T.eq(code, 'restricted', 'code')
    T.eq(e.outcome, 'denied', 'outcome')
    T.eq(e.code, 'restricted', 'event code')
    T.eq(e.ctx.domain, 'other.example', 'who asked')
    T.eq(e.fp, null, 'no fingerprint for a refused value')
  end)

  T.test('other keysource forms and errors', function()
    local path = T.write_file(work .. '/relay.pw', FILE_PW)
    local e = one_event('file', vks.resolve, path)
    T.eq(e.source, 'file', 'source')
    T.eq(e.file, path, 'file path')
    e = one_event('key_data', vks.resolve, { key_data = DATA_PW })
    T.eq(e.source, 'key_data', 'source')
    T.eq(type(e.fp), 'string', 'fingerprint of key_data')
    e = one_event('missing file', vks.resolve, work .. '/nope.pw')
    T.eq(e.outcome, 'error', 'outcome')
    T.eq(e.code, 'file_error', 'code')
    e = one_event('bad keysource', vks.resolve, { vault_mount = 'secret', vault_pth = 'x' })
    T.eq(e.outcome, 'error', 'outcome')
    T.eq(e.code, 'bad_keysource', 'code')
  end)

  -- from here a 1 s ttl: entries expire by sleeping past it
  opts.cache = { ttl = 1, max_stale = 60, neg_ttl = 60, refresh = 1 }
  vks.setup(opts)
  vks.resolve(ks, ctx)

  T.test('refresh: an expired entry fetched by the caller', function()
    sleep(1.2) -- past ttl = 1 s
    local e = one_event('refresh', vks.resolve, ks, ctx)
    T.eq(e.outcome, 'refresh', 'outcome')
    T.eq(e.result, 'success', 'result')
  end)

  T.test('stale: served from the cache while Vault fails', function()
    vd:fault { action = 'status', status = 503, path_prefix = '/v1/secret/data/smtp-auth/example.com', duration_seconds = 60 }
    sleep(1.2)
    local e, v = one_event('stale', vks.resolve, ks, ctx)
    T.same_secret(v, PW, 'stale value')
    T.eq(e.outcome, 'stale', 'outcome')
    T.eq(e.result, 'success', 'result')
    vd:clear_faults()
  end)

  T.test('the callback got exactly the lines of the file, in order', function()
    local file_lines = read_lines(log)
    T.ok(#cb_lines > 0, 'callback called')
    -- the callback sees what this state wrote: all of it here (one state)
    T.eq(#cb_lines, #file_lines, 'same number of lines')
    for i = 1, #file_lines do
      if cb_lines[i] ~= file_lines[i] then T.eq(cb_lines[i], file_lines[i], 'line ' .. i) end
    end
    local s = vks.audit_stats()
    T.eq(s.enabled, true, 'enabled')
    T.eq(s.failures, 0, 'no failures')
    T.eq(s.callback_errors, 0, 'no callback errors')
  end)

  T.test('a raising callback never fails the lookup', function()
    vks.set_audit_callback(function() error('callback broke') end)
    local v = vks.resolve { key_data = DATA_PW }
    T.same_secret(v, DATA_PW, 'served')
    T.eq(vks.audit_stats().callback_errors, 1, 'counted')
    vks.set_audit_callback(function(line) cb_lines[#cb_lines + 1] = line end)
  end)

  T.test('no secret, token or key in the log', function()
    local f = assert(io.open(log, 'rb'))
    local all = f:read('a')
    f:close()
    for _, s in ipairs { PW, PW_R, FILE_PW, DATA_PW, vd.root_token, KEY_B64, KEY_RAW } do
      T.not_contains(all, s, 'audit log')
      T.not_contains(table.concat(cb_lines, '\n'), s, 'callback lines')
    end
  end)

  T.test('the chain verifies with vks audit verify', function()
    local cmd = string.format('%s/%s/vks audit verify %s', os.getenv('ROOT'), os.getenv('BUILD'), T.shq(log))
    local p = io.popen(cmd .. ' 2>&1')
    local out = p:read('a')
    local okc, how, code = p:close()
    T.ok(okc and how == 'exit' and code == 0, 'exit 0: ' .. out)
    T.contains(out, 'OK: 1 chain', 'verdict')
  end)

  T.test('deny on a full disk refuses the lookup; allow serves it', function()
    opts.audit = { file = '/dev/full', on_failure = 'deny' }
    vks.setup(opts)
    local v, msg, code = vks.resolve { key_data = DATA_PW }
    T.eq(v, nil, 'refused')
    T.eq(code, 'audit_unavailable', 'code')
    T.not_contains(msg, DATA_PW, 'message')
    opts.audit = { file = '/dev/full', on_failure = 'allow' }
    vks.setup(opts)
    T.same_secret(vks.resolve { key_data = DATA_PW }, DATA_PW, 'served under allow')
    T.ok(vks.audit_stats().failures >= 2, 'failures counted')
  end)

  T.test('a callback that never returns is stopped at the deadline and the policy applies', function()
    local function stuck() while true do end end
    -- the callback is the only sink, deny: the lookup is refused, never held
    opts.audit = { callback = stuck, on_failure = 'deny', timeout_ms = 200 }
    vks.setup(opts)
    local t0 = os.time()
    local v, msg, code = vks.resolve { key_data = DATA_PW }
    T.eq(v, nil, 'refused')
    T.eq(code, 'audit_unavailable', 'code')
    T.contains(msg, 'deadline', 'message names the deadline')
    local s = vks.audit_stats()
    T.ok(s.timeouts >= 1, 'timeout counted')
    local errs = s.callback_errors
    -- allow: served, counted
    opts.audit = { callback = stuck, on_failure = 'allow', timeout_ms = 200 }
    vks.setup(opts)
    T.same_secret(vks.resolve { key_data = DATA_PW }, DATA_PW, 'served under allow')
    T.ok(vks.audit_stats().callback_errors > errs, 'counted as a callback error')
    -- deny with a file sink as well: the file holds the event, the lookup is served
    opts.audit = { file = log, callback = stuck, on_failure = 'deny', timeout_ms = 200 }
    vks.setup(opts)
    T.same_secret(vks.resolve { key_data = DATA_PW }, DATA_PW, 'served: the file recorded it')
    T.ok(os.time() - t0 < 30, 'every lookup ended (bound, not a speed test)')
    vks.set_audit_callback(nil)
  end)
end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
