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

  local s0 = vks.stats()
  local med, p99 = median_ns(function() return vks.resolve(ks) end, 200, 500)
  local s1 = vks.stats()
  print(string.format('cache hit from Lua (vks.resolve of a KV v2 keysource table): median %.0f ns, ' ..
    'p99 %.0f ns (goal: median <= 1000 ns); %d hits, %d misses during the run', med, p99,
    s1.hits - s0.hits, s1.misses - s0.misses))

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
