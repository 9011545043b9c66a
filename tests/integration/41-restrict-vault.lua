-- Restrictions fail closed, and a refused lookup leaves nothing behind, end to end from Lua against
-- build/vault-dev over HTTPS (issue 10, items 2 and 4), with vault-dev's request counters, its
-- metadata API and (for replies real Vault cannot produce) its fault injection:
--  * restriction keys in another case or with other separators refuse the secret;
--  * custom_metadata that is not an object (string, array, number, boolean) refuses; null does not;
--  * IPv4-mapped forms (::ffff:192.0.2.1, ::ffff:192.0.2.0/120) compare as their IPv4 address;
--  * a refused lookup caches no value: the next allowed caller is a miss that reads Vault, the
--    stats show no value and count the refusal; a hit refused after the metadata changed (or for
--    another context) wipes the cached value; refused callers after that do not read Vault.
local T = require 'testlib'
T.reexec { VAULT_ADDR = false, VAULT_TOKEN = false, VAULT_NAMESPACE = false, VKS_CACHE_TTL = false,
           VKS_CACHE_MAX_STALE = false, VKS_CACHE_NEG_TTL = false, VKS_CACHE_REFRESH = false,
           VKS_CACHE_CAPACITY = false, HOME = os.getenv('VKS_SUITE_WORK') or '/tmp' }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

-- listed in tests/test-secrets.d/restrict.txt
local PW = 'restrict41-PW-9e8d7c6b5a'
local PW2 = 'restrict41-PW-rotated-4f3e2d'

local function sleep(s) os.execute('sleep ' .. s) end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local base = { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
                 max_retries = 0 }
  local function setup(cache)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    o.cache = cache
    assert(vks.setup(o))
  end
  local function ks(path) return { vault_mount = 'secret', vault_path = path } end
  local function gets(path) return vd:count('GET', '/v1/secret/data/' .. path) end
  local function delta(before, field) return vks.stats()[field] - before[field] end
  local function meta(path, cm)
    local st = vd:call('POST', '/v1/secret/metadata/' .. path, { custom_metadata = cm })
    T.ok(st == 204 or st == 200, 'metadata written (HTTP ' .. tostring(st) .. ')')
  end
  local function wait_stat(field, atleast)
    for _ = 1, 200 do
      if vks.stats()[field] >= atleast then return true end
      sleep(0.1)
    end
    return false
  end

  setup { ttl = 300 }

  -- ---------------------------------------------------------------- item 2: fail closed

  T.test('restriction keys in another case or with other separators refuse the secret', function()
    local keys = { 'Allowed_Domains', 'allowed-domains', 'ALLOWED_HOSTS', 'allowed domains',
                   'allowedHosts', 'allowed.domains', 'allowed_domain', 'disallowed_domains' }
    for i, key in ipairs(keys) do
      local path = 'r41/keys' .. i
      vd:kv2_put(path, { key = PW })
      -- the value names the context exactly: only the key's refusal can deny
      meta(path, { [key] = 'ok.example' })
      local s0 = vks.stats()
      T.fails('restricted', { key, 'looks like a restriction' }, vks.resolve, ks(path),
              { domain = 'ok.example', destination = 'ok.example' })
      T.eq(delta(s0, 'values'), 0, key .. ': no value cached')
      -- next to a valid list that allows this context
      meta(path, { allowed_domains = 'ok.example', [key] = 'x.example' })
      vks.invalidate(ks(path))
      T.fails('restricted', { key }, vks.resolve, ks(path), { domain = 'ok.example' })
    end
    -- other people's keys are not restrictions
    vd:kv2_put('r41/owner', { key = PW })
    meta('r41/owner', { owner = 'mail-team', note = 'allowed for mail', shallow = 'x' })
    T.same_secret(vks.resolve(ks('r41/owner'), { domain = 'any.example' }), PW, 'unrestricted')
  end)

  -- real Vault only stores a map of strings, so these replies are injected
  T.test('custom_metadata that is not an object refuses the secret; null does not', function()
    local bodies = {
      string = '"allowed_domains=ok.example"', empty_string = '""', array = '["ok.example"]',
      number = '42', boolean = 'true', nested = '[{"allowed_domains":"ok.example"}]',
    }
    local path = 'r41/nonobj'
    vd:kv2_put(path, { key = PW })
    local function reply(cm)
      return '{"request_id":"r41","lease_id":"","renewable":false,"lease_duration":0,"data":{"data":{"key":"' ..
        PW .. '"},"metadata":{"created_time":"2024-01-01T00:00:00Z","custom_metadata":' .. cm ..
        ',"deletion_time":"","destroyed":false,"version":1}},"wrap_info":null,"warnings":null,"auth":null}'
    end
    for name, cm in pairs(bodies) do
      vks.invalidate(ks(path))
      vd:fault { action = 'status', status = 200, method = 'GET', path_prefix = '/v1/secret/data/' .. path,
                 body = reply(cm), content_type = 'application/json', count = 1 }
      local s0 = vks.stats()
      T.fails('restricted', { 'custom_metadata cannot be read' }, vks.resolve, ks(path), { domain = 'ok.example' })
      T.eq(delta(s0, 'values'), 0, name .. ': no value cached')
      T.eq(delta(s0, 'refused'), 1, name .. ': counted as refused')
    end
    vks.invalidate(ks(path))
    vd:fault { action = 'status', status = 200, method = 'GET', path_prefix = '/v1/secret/data/' .. path,
               body = reply('null'), content_type = 'application/json', count = 1 }
    T.same_secret(vks.resolve(ks(path), { domain = 'ok.example' }), PW, 'null is "no custom_metadata"')
    vd:clear_faults()
  end)

  T.test('IPv4-mapped forms compare as their IPv4 address, in the list and the destination', function()
    local lists = { '::ffff:192.0.2.1', '::FFFF:c000:201', '::ffff:192.0.2.0/120', '192.0.2.1',
                    '198.51.100.7, ::ffff:192.0.2.0/120' }
    local same = { '192.0.2.1', '192.0.2.1:25', '::ffff:192.0.2.1', '[::ffff:192.0.2.1]:587' }
    for i, list in ipairs(lists) do
      local path = 'r41/mapped' .. i
      vd:kv2_put(path, { key = PW })
      meta(path, { allowed_hosts = list })
      for _, dest in ipairs(same) do
        T.same_secret(vks.resolve(ks(path), { destination = dest }), PW, list .. ' / ' .. dest)
      end
      T.fails('restricted', { 'allowed_hosts' }, vks.resolve, ks(path), { destination = '203.0.113.9' })
      T.fails('restricted', { 'allowed_hosts' }, vks.resolve, ks(path), { destination = '::ffff:203.0.113.9' })
      T.fails('restricted', { 'allowed_hosts' }, vks.resolve, ks(path), { destination = '2001:db8::1' })
    end
    vd:kv2_put('r41/mapped-bad', { key = PW })
    meta('r41/mapped-bad', { allowed_hosts = '::ffff:192.0.2.0/64' })
    T.fails('restricted', { 'malformed' }, vks.resolve, ks('r41/mapped-bad'), { destination = '192.0.2.1' })
  end)

  -- ---------------------------------------------------------------- item 4: nothing left behind

  T.test('a refused lookup caches nothing: the next allowed caller is a miss that reads Vault', function()
    local path = 'r41/refused-first'
    vd:kv2_put(path, { key = PW })
    meta(path, { allowed_domains = 'a.example' })
    vd:reset_counters()
    local s0 = vks.stats()
    T.fails('restricted', { 'other.example', 'allowed_domains' }, vks.resolve, ks(path), { domain = 'other.example' })
    T.eq(gets(path), 1, 'the refused lookup read Vault')
    T.eq(delta(s0, 'values'), 0, 'no value cached after the refusal')
    T.eq(delta(s0, 'value_bytes'), 0, 'no arena bytes held for it')
    T.eq(delta(s0, 'arena_in_use'), 0, 'the arena holds nothing more than before the lookup')
    T.eq(delta(s0, 'refused'), 1, 'stats count the refusal')
    -- other refused callers are judged on the remembered metadata (no secret), without a read
    T.fails('restricted', {}, vks.resolve, ks(path), { domain = 'other2.example' })
    T.fails('restricted', {}, vks.resolve, ks(path))
    T.eq(gets(path), 1, 'refused again without reading Vault')
    -- the allowed caller: a miss that reads Vault, then hits
    local s1 = vks.stats()
    T.same_secret(vks.resolve(ks(path), { domain = 'a.example' }), PW, 'allowed')
    T.eq(gets(path), 2, 'the allowed caller read Vault')
    T.eq(delta(s1, 'misses'), 1, 'a miss')
    T.eq(delta(s1, 'hits'), 0, 'not a hit')
    T.same_secret(vks.resolve(ks(path), { domain = 'a.example' }), PW, 'allowed again')
    T.eq(delta(s1, 'hits'), 1, 'then a hit')
    T.eq(gets(path), 2, 'served from the cache')
  end)

  T.test('a cache hit refused for another context wipes the cached value', function()
    local path = 'r41/hit-refused'
    vd:kv2_put(path, { key = PW })
    meta(path, { allowed_domains = 'a.example', allowed_hosts = 'relay.a.example' })
    local allowed = { domain = 'a.example', destination = 'relay.a.example' }
    local refused = { { domain = 'b.example', destination = 'relay.a.example' },
                      { domain = 'a.example', destination = 'relay.b.example' },
                      { domain = 'a.example' }, {} }
    vd:reset_counters()
    for i, ctx in ipairs(refused) do
      local s0 = vks.stats()
      T.same_secret(vks.resolve(ks(path), allowed), PW, 'allowed')
      T.eq(gets(path), i, 'context ' .. i .. ': the allowed caller read Vault (nothing was left cached)')
      T.eq(delta(s0, 'misses'), 1, 'context ' .. i .. ': a miss')
      T.eq(delta(s0, 'values'), 1, 'context ' .. i .. ': cached')
      local s1 = vks.stats()
      T.fails('restricted', {}, vks.resolve, ks(path), ctx)
      T.eq(delta(s1, 'hits'), 1, 'context ' .. i .. ': refused on a cache hit')
      T.eq(delta(s1, 'values'), -1, 'context ' .. i .. ': the refusal wiped the cached value')
      T.ok(delta(s1, 'arena_in_use') < 0, 'context ' .. i .. ': its arena slot was given back')
      T.eq(delta(s1, 'refused'), 1, 'context ' .. i .. ': counted as refused')
      T.eq(delta(s1, 'refused_wipes'), 1, 'context ' .. i .. ': counted as a refused wipe')
      T.eq(gets(path), i, 'context ' .. i .. ': the refusal read nothing')
    end
  end)

  T.test('a hit that new metadata refuses is wiped (the background refresh brought it)', function()
    setup { ttl = 4, refresh = 0.25, max_stale = 0 }
    vks.flush() -- values cached by the tests above would expire under the short ttl meanwhile
    local path = 'r41/meta-changed'
    vd:kv2_put(path, { key = PW })
    meta(path, { allowed_domains = 'a.example' })
    vd:reset_counters()
    local s0 = vks.stats()
    T.same_secret(vks.resolve(ks(path), { domain = 'a.example' }), PW, 'allowed')
    -- the credential is rotated and now restricted to b.example
    vd:kv2_put(path, { key = PW2 })
    meta(path, { allowed_domains = 'b.example' })
    sleep(1.2) -- past refresh x ttl: the next hit asks for a background refresh
    T.same_secret(vks.resolve(ks(path), { domain = 'a.example' }), PW, 'still the old value and metadata')
    T.ok(wait_stat('refreshes', s0.refreshes + 1), 'the background refresh ran')
    T.eq(gets(path), 2, 'the refresh read Vault')
    local s1 = vks.stats()
    T.eq(s1.values - s0.values, 1, 'the new value is cached')
    T.fails('restricted', { 'a.example' }, vks.resolve, ks(path), { domain = 'a.example' })
    local s2 = vks.stats()
    T.eq(s2.values - s0.values, 0, 'the refused hit wiped the cached value')
    T.eq(s2.refused_wipes - s1.refused_wipes, 1, 'counted as a refused wipe')
    T.fails('restricted', {}, vks.resolve, ks(path), { domain = 'a.example' })
    T.eq(gets(path), 2, 'refused again from the remembered metadata, no read')
    T.same_secret(vks.resolve(ks(path), { domain = 'b.example' }), PW2, 'the new domain gets the new value')
    T.eq(gets(path), 3, 'by reading Vault')
    setup { ttl = 300 }
  end)

end)
vd:stop()
if not ok then
  print('suite error: ' .. tostring(err))
  T.failed = T.failed + 1
end
os.exit(T.done())
