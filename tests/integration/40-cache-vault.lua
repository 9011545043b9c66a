-- The cache end to end, from Lua, against build/vault-dev over HTTPS, with vault-dev's request
-- counters and fault injection: hits make no request, stale is served during an outage and never
-- past max_stale, a 403 / destroyed version / deleted secret stops the value within one lookup
-- (also when the background refresh is the one that finds out), refresh-ahead means no caller
-- waits in steady state even with a slow Vault, the negative cache, and KV v1 leases bounding the
-- ttl. Times are small (seconds) and every check is on outcomes and counters, never on durations.
local T = require 'testlib'
T.reexec { VAULT_ADDR = false, VAULT_TOKEN = false, VAULT_NAMESPACE = false, VKS_CACHE_TTL = false,
           VKS_CACHE_MAX_STALE = false, VKS_CACHE_NEG_TTL = false, VKS_CACHE_REFRESH = false,
           VKS_CACHE_CAPACITY = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp',
           VKS_AUDIT_FILE = (os.getenv('VKS_SUITE_WORK') or '/tmp') .. '/cache-audit.jsonl' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'cache-vault-PW-0a9b8c7d'
local PW2 = 'cache-vault-PW-rotated-e6f5'
local LIMITED = 'cache-limited-TOKEN-5f1e2d3c'

local function sleep(s) os.execute('sleep ' .. s) end

local vd = vaultdev.start { tls = true, args = { '--kv1', 'kv' } }
local ok, err = pcall(function()
  local base = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
                 max_retries = 0 }
  local function setup(cache)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    o.cache = cache
    assert(vks.setup(o))
  end
  local function ks(path, extra)
    local t = { vault_mount = 'secret', vault_path = path }
    for k, v in pairs(extra or {}) do t[k] = v end
    return t
  end
  local function gets(path, mount) return vd:count('GET', '/v1/' .. (mount or 'secret') .. '/data/' .. path) end
  local function delta(before, field) return vks.stats()[field] - before[field] end
  -- polls a stats counter (the refresh thread works in the background); gives up after 20 s
  local function wait_stat(field, atleast)
    for _ = 1, 200 do
      if vks.stats()[field] >= atleast then return true end
      sleep(0.1)
    end
    return false
  end

  local function lines() -- the audit trail (VKS_AUDIT_FILE)
    local t = {}
    local f = io.open(os.getenv('VKS_AUDIT_FILE'))
    if f then for l in f:lines() do t[#t + 1] = l end f:close() end
    return t
  end
  local function last_event() local l = lines(); return l[#l] end

  setup { ttl = 300 }

  T.test('repeated lookups are cache hits: one request for ten lookups', function()
    vd:kv2_put('cache-v/hits', { key = PW })
    local s0 = vks.stats()
    for _ = 1, 10 do T.same_secret(vks.resolve(ks('cache-v/hits')), PW, 'value') end
    T.eq(gets('cache-v/hits'), 1, 'requests to vault-dev')
    T.eq(delta(s0, 'misses'), 1, 'misses')
    T.eq(delta(s0, 'hits'), 9, 'hits')
  end)

  T.test('resolve_handle is served from the same cache', function()
    local s0 = vks.stats()
    local h <close> = vks.resolve_handle(ks('cache-v/hits'))
    T.same_secret(h:reveal(), PW, 'handle value')
    T.eq(gets('cache-v/hits'), 1, 'no new request')
    T.eq(delta(s0, 'hits'), 1, 'a hit')
  end)

  T.test('resolve_handle writes exactly one audit event, like resolve, with the cache outcome', function()
    local n0 = #lines()
    local h <close> = vks.resolve_handle(ks('cache-v/hits'))
    local l = lines()
    T.eq(#l, n0 + 1, 'one event for resolve_handle')
    T.contains(l[#l], '"api":"resolve_handle"', 'api')
    T.contains(l[#l], '"outcome":"hit"', 'outcome')
    T.contains(l[#l], '"cached":true', 'cached')
    T.same_secret(vks.resolve(ks('cache-v/hits')), PW, 'resolve')
    l = lines()
    T.eq(#l, n0 + 2, 'one event for resolve')
    T.contains(l[#l], '"api":"resolve"', 'api')
    T.contains(l[#l], '"outcome":"hit"', 'outcome')
  end)

  T.test('vks.invalidate makes the next lookup read Vault again', function()
    T.eq(vks.invalidate(ks('cache-v/hits')), 1, 'one entry dropped')
    T.eq(vks.invalidate(ks('cache-v/hits')), 0, 'nothing left to drop')
    T.same_secret(vks.resolve(ks('cache-v/hits')), PW, 'value')
    T.eq(gets('cache-v/hits'), 2, 'requests')
    T.ok(vks.flush() >= 1, 'flush drops entries')
    T.eq(vks.stats().entries, 0, 'empty after flush')
  end)

  T.test('stale is served during an outage, and not past max_stale', function()
    setup { ttl = 1, max_stale = 3, neg_ttl = 0.5, refresh = 1 }
    vd:kv2_put('cache-v/stale', { key = PW })
    T.same_secret(vks.resolve(ks('cache-v/stale')), PW, 'first lookup')
    vd:fault { action = 'status', status = 503, path_prefix = '/v1/secret/data/cache-v/stale', duration_seconds = 60 }
    sleep(1.3) -- expired, inside the stale window (1 s + 3 s)
    local s0 = vks.stats()
    T.same_secret(vks.resolve(ks('cache-v/stale')), PW, 'stale value during the outage')
    T.eq(delta(s0, 'stale'), 1, 'counted as stale')
    T.contains(last_event(), '"outcome":"stale"', 'audit outcome')
    T.ok(gets('cache-v/stale') >= 2, 'Vault was asked and failed')
    sleep(0.6) -- past neg_ttl: Vault is asked again, still failing
    T.same_secret(vks.resolve(ks('cache-v/stale')), PW, 'still stale')
    sleep(3.2) -- now past expiry + max_stale
    local msg = T.fails('unavailable', { 'cache-v/stale' }, vks.resolve, ks('cache-v/stale'))
    T.not_contains(msg, PW, 'message')
    vd:clear_faults()
    sleep(0.6)
    T.same_secret(vks.resolve(ks('cache-v/stale')), PW, 'back after the outage')
  end)

  T.test('a sealed Vault is an outage too: stale is served', function()
    setup { ttl = 1, max_stale = 30, neg_ttl = 0.5, refresh = 1 }
    vd:kv2_put('cache-v/sealed', { key = PW })
    T.same_secret(vks.resolve(ks('cache-v/sealed')), PW, 'first lookup')
    vd:seal()
    sleep(1.3)
    local s0 = vks.stats()
    local v = vks.resolve(ks('cache-v/sealed'))
    vd:unseal()
    T.same_secret(v, PW, 'stale while sealed')
    T.eq(delta(s0, 'stale'), 1, 'counted as stale')
  end)

  T.test('a revoked token (403) stops the value within one lookup', function()
    setup { ttl = 1, max_stale = 900, neg_ttl = 30, refresh = 1 }
    vd:policy('cache-read', 'path "secret/data/cache-v/*" { capabilities = ["read"] }')
    local tok = vd:create_token { id = LIMITED, policies = { 'cache-read' } }
    T.eq(tok, LIMITED, 'token id')
    vd:kv2_put('cache-v/revoked', { key = PW })
    local k = ks('cache-v/revoked', { vault_token = LIMITED })
    T.same_secret(vks.resolve(k), PW, 'readable with the token')
    local st = vd:call('POST', '/v1/auth/token/revoke', { token = LIMITED })
    T.eq(st, 204, 'revoked')
    sleep(1.2) -- expired: the next lookup asks Vault, which says 403
    local s0 = vks.stats()
    local msg = T.fails('permission_denied', { 'cache-v/revoked' }, vks.resolve, k)
    T.not_contains(msg, LIMITED, 'message')
    T.eq(delta(s0, 'stale'), 0, 'no stale value after a 403 (max_stale is 900 s)')
    T.eq(delta(s0, 'revocations'), 1, 'the value was dropped')
    local n = gets('cache-v/revoked')
    T.fails('permission_denied', {}, vks.resolve, k)
    T.eq(gets('cache-v/revoked'), n, 'the failure is remembered for neg_ttl: no new request')
    T.contains(last_event(), '"code":"permission_denied"', 'audit code of a remembered failure')
    T.contains(last_event(), '"cached":true', 'audited as answered from the cache')
  end)

  T.test('a destroyed version stops the value within one lookup', function()
    setup { ttl = 1, max_stale = 900, neg_ttl = 0.5, refresh = 1 }
    vd:kv2_put('cache-v/destroyed', { key = PW })
    T.same_secret(vks.resolve(ks('cache-v/destroyed')), PW, 'first lookup')
    vd:kv2_destroy('cache-v/destroyed', { 1 })
    sleep(1.2)
    T.fails('destroyed', { 'cache-v/destroyed' }, vks.resolve, ks('cache-v/destroyed'))
  end)

  T.test('the background refresh drops a deleted secret before it expires', function()
    setup { ttl = 30, max_stale = 900, neg_ttl = 30, refresh = 0.02 } -- refresh after 0.6 s
    vd:kv2_put('cache-v/deleted', { key = PW })
    T.same_secret(vks.resolve(ks('cache-v/deleted')), PW, 'first lookup')
    vd:kv2_delete('cache-v/deleted')
    sleep(0.8)
    local s0 = vks.stats()
    T.same_secret(vks.resolve(ks('cache-v/deleted')), PW, 'still fresh: served, refresh queued')
    T.ok(wait_stat('revocations', s0.revocations + 1), 'the refresh thread saw the deletion')
    T.fails('deleted', { 'cache-v/deleted' }, vks.resolve, ks('cache-v/deleted'))
    T.eq(delta(s0, 'misses'), 0, 'no caller fetched: the refresh thread did')
  end)

  T.test('refresh-ahead: with a slow Vault, no caller waits in steady state', function()
    setup { ttl = 4, max_stale = 900, neg_ttl = 1, refresh = 0.25 } -- refresh after 1 s
    vd:kv2_put('cache-v/steady', { key = PW })
    T.same_secret(vks.resolve(ks('cache-v/steady')), PW, 'first lookup (a miss)')
    vd:fault { action = 'latency', latency_ms = 400, path_prefix = '/v1/secret/data/cache-v/steady', duration_seconds = 60 }
    local s0 = vks.stats()
    local n0 = gets('cache-v/steady')
    local rotated, seen_new = false, false
    for i = 1, 70 do -- about 7 s of lookups, well past the 4 s ttl
      local v = vks.resolve(ks('cache-v/steady'))
      if v == PW2 then seen_new = true else T.same_secret(v, PW, 'value') end
      if i == 35 and not rotated then vd:kv2_put('cache-v/steady', { key = PW2 }); rotated = true end
      sleep(0.1)
    end
    vd:clear_faults()
    T.eq(delta(s0, 'waits'), 0, 'no lookup waited for a fetch')
    T.eq(delta(s0, 'misses'), 0, 'no lookup missed')
    T.eq(delta(s0, 'hits'), 70, 'every lookup was a hit')
    T.ok(delta(s0, 'refreshes') >= 2, 'the refresh thread re-read the value')
    T.ok(gets('cache-v/steady') - n0 >= 2, 'vault-dev saw the background requests')
    T.ok(seen_new, 'the rotated value reached callers without any of them waiting')
  end)

  T.test('negative cache: a missing secret is asked once per neg_ttl', function()
    setup { ttl = 300, max_stale = 900, neg_ttl = 60 }
    for _ = 1, 3 do T.fails('not_found', { 'cache-v/nope' }, vks.resolve, ks('cache-v/nope')) end
    T.eq(gets('cache-v/nope'), 1, 'one request for three lookups')
    vd:kv2_put('cache-v/nope', { key = PW })
    T.fails('not_found', {}, vks.resolve, ks('cache-v/nope'))
    T.eq(vks.invalidate(ks('cache-v/nope')), 1, 'invalidate forgets the failure')
    T.same_secret(vks.resolve(ks('cache-v/nope')), PW, 'found now')
    T.eq(gets('cache-v/nope'), 2, 'requests')
  end)

  T.test('KV v1: 0.9 x lease_duration bounds the ttl', function()
    setup { ttl = 300, max_stale = 900, neg_ttl = 1, refresh = 1 }
    vd:kv1_put('cache-v/lease', { key = PW, ttl = '2s' }, 'kv')
    local k = { vault_mount = 'kv', vault_path = 'cache-v/lease', vault_kv_version = 1 }
    T.same_secret(vks.resolve(k), PW, 'first lookup')
    T.same_secret(vks.resolve(k), PW, 'hit')
    T.eq(vd:count('GET', '/v1/kv/cache-v/lease'), 1, 'one request')
    sleep(2.0) -- past 0.9 x 2 s, far below ttl 300 s
    T.same_secret(vks.resolve(k), PW, 'after the lease')
    T.eq(vd:count('GET', '/v1/kv/cache-v/lease'), 2, 're-read after 0.9 x lease_duration')
  end)
end)
vd:stop()
if not ok then
  T.failed = T.failed + 1
  print('FAILED setup: ' .. tostring(err))
end
os.exit(T.done())
