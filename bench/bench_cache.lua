-- bench_cache.lua: a cache hit through the whole Lua module (keysource table -> C struct, identity,
-- cache, restrictions, audit as configured by default, Lua string push), against build/vault-dev
-- over HTTPS after the first lookup. A measurement, not a test (make bench; docs/benchmarks.md).
-- Goal: vks.resolve cache hit median <= 1 us.
package.path = (os.getenv('ROOT') or '.') .. '/tests/lib/?.lua;' .. package.path
local vaultdev = require 'vaultdev'
local vks = require 'vault_keysource'

local PW = 'cache-bench-PW-7d1e0c2b'
local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  vd:kv2_put('smtp-auth/bench.example.com', { key = PW })
  assert(vks.setup { address = vd.addr, ca_cert = vd.cacert, token = vd.root_token })
  local ks = { vault_mount = 'secret', vault_path = 'smtp-auth/bench.example.com' }
  assert(vks.resolve(ks) == PW, 'first lookup')

  local clock = os.clock -- CPU time of this process: the loop is single-threaded and never sleeps
  local function median_ns(fn, batches, per)
    local t = {}
    for _ = 1, 2000 do fn() end
    for b = 1, batches do
      local t0 = clock()
      for _ = 1, per do fn() end
      t[b] = (clock() - t0) * 1e9 / per
    end
    table.sort(t)
    return t[(batches + 1) // 2], t[math.ceil(batches * 0.99)]
  end

  -- the reference: a plain Lua table memo as a policy writer would put in front of any lookup
  -- function (a key string built from the keysource's fields, one table index). Measured in
  -- alternating batches with the hit so that both see the same load on the shared machine.
  local memo = {}
  local function memo_resolve(k)
    local id = (k.vault_address or '') .. '\0' .. k.vault_mount .. '\0' .. k.vault_path .. '\0' .. (k.vault_key or 'key')
    local v = memo[id]
    if v == nil then
      v = assert(vks.resolve(k))
      memo[id] = v
    end
    return v
  end
  assert(memo_resolve(ks) == PW)
  local function paired(fa, fb, batches, per)
    local ta, tb = {}, {}
    for _ = 1, 2000 do fa(); fb() end
    for b = 1, batches do
      local t0 = clock()
      for _ = 1, per do fa() end
      local t1 = clock()
      for _ = 1, per do fb() end
      ta[b] = (t1 - t0) * 1e9 / per
      tb[b] = (clock() - t1) * 1e9 / per
    end
    table.sort(ta)
    table.sort(tb)
    return ta[(batches + 1) // 2], ta[math.ceil(batches * 0.99)], tb[(batches + 1) // 2]
  end

  local s0 = vks.stats()
  local med, p99, memo_med = paired(function() return vks.resolve(ks) end,
    function() return memo_resolve(ks) end, 200, 500)
  local s1 = vks.stats()
  print(string.format('cache hit from Lua (vks.resolve of a KV v2 keysource table): median %.0f ns, ' ..
    'p99 %.0f ns (goal: median <= 1000 ns); %d hits, %d misses during the run', med, p99,
    s1.hits - s0.hits, s1.misses - s0.misses))
  print(string.format('plain Lua table memo (key string from the fields + table index): median %.0f ns; ' ..
    'Lua hit / memo = %.2fx (goal: <= 3x)', memo_med, med / memo_med))
  local ctx = { domain = 'bench.example.com', destination = 'mx.bench.example.com' }
  med = median_ns(function() return vks.resolve(ks, ctx) end, 200, 500)
  print(string.format('cache hit from Lua with a ctx (domain, destination): median %.0f ns', med))

  med, p99 = median_ns(function()
    local h = vks.resolve_handle(ks)
    h:close()
  end, 200, 500)
  print(string.format('cache hit from Lua through a handle (resolve_handle + close): median %.0f ns, p99 %.0f ns',
    med, p99))

  local ks_reused = { vault_mount = 'secret', vault_path = 'smtp-auth/bench.example.com', vault_key = 'key' }
  med = median_ns(function() return vks.stats() end, 100, 200)
  print(string.format('vks.stats(): median %.0f ns', med))
  assert(vks.resolve(ks_reused) == PW)
end)
vd:stop()
os.execute("rm -rf '" .. vd.workdir .. "'")
if not ok then print('bench_cache.lua failed: ' .. tostring(err)) end
