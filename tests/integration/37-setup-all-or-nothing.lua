-- vks.setup is all or nothing: a setup that raises, wherever its bad option is (audit sink,
-- cache, address, a file the Vault client needs, an option table whose __index raises), leaves
-- the configuration in force exactly as it was: address, require_encrypted, cache ttl, audit
-- sinks and the audit callback. Run under build-asan, LeakSanitizer proves that the raising
-- setups free what they prepared (hundreds of them run below).
local T = require 'testlib'
local WORK = os.getenv('VKS_SUITE_WORK') or '/tmp'
T.reexec { VKS_AUDIT_FILE = false, VKS_CACHE_TTL = false, VAULT_ADDR = false, VAULT_TOKEN = false,
  HOME = WORK, VKS_AUDIT_KEY = false, VKS_AUDIT_KEY_FILE = false, VKS_REQUIRE_ENCRYPTED = false,
  VKS_AUDIT_STDERR = false }
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'relay-pw-LUA37-plain-5e1c08'
local AUDIT_A = WORK .. '/audit37-a.jsonl'
local AUDIT_B = WORK .. '/audit37-b.jsonl'

local function count_lines(path)
  local f = io.open(path, 'rb')
  if not f then return 0 end
  local n = 0
  for _ in f:lines() do n = n + 1 end
  f:close()
  return n
end

local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  local base = {
    address = vd.addr, ca_cert = vd.cacert, token = vd.root_token, timeout = '5s',
    max_retries = 0, cache = { ttl = 0 }, audit = { file = AUDIT_A },
  }
  local function with(extra)
    local o = {}
    for k, v in pairs(base) do o[k] = v end
    for k, v in pairs(extra) do o[k] = v end
    return o
  end
  local okk, changed = vks.setup(base)
  T.ok(okk and changed, 'the base setup applies')
  vd:kv2_put('smtp-auth/s37', { key = PW })
  local ks = { vault_mount = 'secret', vault_path = 'smtp-auth/s37' }

  -- everything a failed setup must not have changed
  local function assert_unchanged(label)
    vd:reset_counters()
    local before_a = count_lines(AUDIT_A)
    T.same_secret(vks.resolve(ks), PW, label .. ': plaintext served from the configured address')
    T.eq(vd:count('GET', '/v1/secret/data/smtp-auth/s37'), 1, label .. ': fetched (ttl 0, same address)')
    T.eq(vks.stats().ttl, 0, label .. ': cache ttl')
    local as = vks.audit_stats()
    T.eq(as.sinks, 1, label .. ': audit sinks')
    T.eq(as.mode, 'sync', label .. ': audit mode')
    T.ok(count_lines(AUDIT_A) > before_a, label .. ': the lookup was audited to the old file')
    T.eq(count_lines(AUDIT_B), 0, label .. ': nothing written to the rejected file')
  end
  assert_unchanged('baseline')

  -- each changes the address, require_encrypted and the cache ttl, then fails somewhere else
  local changes = { address = 'https://127.0.0.1:9', require_encrypted = true, cache = { ttl = 300 } }
  local function failing(extra, part)
    local o = with(changes)
    for k, v in pairs(extra) do o[k] = v end
    return T.raises(part, vks.setup, o)
  end

  T.test('a bad audit sink (applied last) changes nothing', function()
    failing({ audit = { file = WORK .. '/no/such/dir/a.jsonl' } }, 'a.jsonl')
    assert_unchanged('audit file in a missing directory')
    failing({ audit = { file = AUDIT_B, key_file = WORK .. '/missing-audit-key' } }, 'missing-audit-key')
    assert_unchanged('missing audit key file')
    failing({ audit = { file = AUDIT_B, require_key = true } }, 'require_key')
    assert_unchanged('require_key without a key')
  end)

  T.test('a bad audit option (read first) changes nothing', function()
    failing({ audit = { file = AUDIT_B, mode = 'sometimes' } }, 'audit.mode')
    failing({ audit = { file = AUDIT_B, queue_size = 0 } }, 'audit.queue_size')
    failing({ audit = { file = AUDIT_B, colour = 'blue' } }, 'audit.colour')
    assert_unchanged('bad audit options')
  end)

  T.test('a bad cache option changes nothing', function()
    local o = with { address = 'https://127.0.0.1:9', require_encrypted = true,
      cache = { ttl = 300, refresh = 2 }, audit = { file = AUDIT_B } }
    T.raises('cache.refresh', vks.setup, o)
    o.cache = { ttl = 300, capacity = '1G' }
    T.raises('cache.capacity', vks.setup, o)
    o.cache = { ttl = -1 }
    T.raises('cache', vks.setup, o)
    assert_unchanged('bad cache options')
  end)

  T.test('a bad address or a missing CA file changes nothing (audit not reconfigured)', function()
    local o = with { require_encrypted = true, cache = { ttl = 300 }, audit = { file = AUDIT_B } }
    o.address = 'ftp://vault.example'
    T.raises('address', vks.setup, o)
    o.address = 'https://vault.example:8200?x=1'
    T.raises('address', vks.setup, o)
    o.address = vd.addr
    o.ca_cert = WORK .. '/missing-ca.pem'
    T.raises('missing-ca.pem', vks.setup, o)
    assert_unchanged('bad address / CA')
  end)

  T.test('an __index that raises, at every level, changes nothing and leaks nothing', function()
    local function raising(t)
      return setmetatable(t, { __index = function(_, k) error('index raised at ' .. tostring(k), 0) end })
    end
    for _ = 1, 50 do
      -- the top-level table: the binding looks up the (absent) subtables with metamethods
      local top = with { address = 'https://127.0.0.1:9', require_encrypted = true }
      top.cache, top.audit = nil, nil
      T.raises('index raised', vks.setup, raising(top))
      -- the cache subtable (after its prepared state was allocated)
      T.raises('index raised', vks.setup, with { address = 'https://127.0.0.1:9', cache = raising { ttl = 300 } })
      -- the audit subtable, after its strings were copied
      T.raises('index raised', vks.setup, with { address = 'https://127.0.0.1:9', cache = { ttl = 300 },
        audit = raising { file = AUDIT_B } })
      -- the audit subtable, after the callback was seen (is_a function) but before setup applied
      T.raises('index raised', vks.setup, with { require_encrypted = true,
        audit = raising { file = AUDIT_B, callback = function() end, mode = 'sync', on_failure = 'deny',
          stderr = false, required = false, require_key = false, queue_size = 8, reopen_check_ms = 0,
          syslog = false } })
      -- the syslog subtable inside audit
      T.raises('index raised', vks.setup, with { cache = { ttl = 300 },
        audit = { file = AUDIT_B, syslog = raising { socket = WORK .. '/nosock' } } })
    end
    assert_unchanged('raising __index')
  end)

  T.test('many failed setups in a row (the LeakSanitizer run counts them)', function()
    for i = 1, 100 do
      local extra = ({
        { audit = { file = WORK .. '/no/such/dir/a.jsonl' } },
        { cache = { ttl = 300, refresh = 0 } },
        { address = 'gopher://x' },
        { audit = { file = AUDIT_B, mode = 'x' } },
      })[i % 4 + 1]
      local o = with(changes)
      for k, v in pairs(extra) do o[k] = v end
      T.ok(not pcall(vks.setup, o), 'setup ' .. i .. ' raises')
    end
    assert_unchanged('after 100 failed setups')
  end)

  T.test('an audit callback in a failed setup is not registered', function()
    local calls = 0
    local cb = function() calls = calls + 1 end
    failing({ audit = { file = WORK .. '/no/such/dir/cb.jsonl', callback = cb } }, 'cb.jsonl')
    T.same_secret(vks.resolve(ks), PW, 'resolve')
    T.eq(calls, 0, 'callback calls after the failed setup')
    T.raises('index raised', vks.setup, with { audit = setmetatable({ file = AUDIT_A, callback = cb },
      { __index = function() error('index raised', 0) end }) })
    T.same_secret(vks.resolve(ks), PW, 'resolve')
    T.eq(calls, 0, 'callback calls after the raising setup')
  end)

  T.test('after the failures a good setup applies completely', function()
    local okk, changed = vks.setup(with { cache = { ttl = 300 }, audit = { file = AUDIT_B } })
    T.ok(okk, 'applied')
    T.eq(vks.stats().ttl, 300, 'new ttl')
    T.same_secret(vks.resolve(ks), PW, 'resolve')
    T.ok(count_lines(AUDIT_B) > 0, 'the new audit file is used')
    okk, changed = vks.setup(with { cache = { ttl = 300 }, audit = { file = AUDIT_B } })
    T.eq(changed, false, 'the same options again: a no-op')
  end)
end)
if not ok then
  T.test('suite setup', function() error(err, 0) end)
end
vd:stop()
os.exit(T.done())
