#!/usr/bin/env bash
# Concurrency of the process-wide cache. Listed in tests/tsan-suites: `make tsan` runs it under
# ThreadSanitizer (Criterion cannot run under TSan). Helper: tests/helpers/cache_threads.c.
#  1. core: 16 threads hammer 40 keys through a 24-entry cache while another thread invalidates;
#     then 64 concurrent misses for one key make exactly one fetch (in-process fetch function);
#     then admitted and refused callers (ops->admit) of 8 keys at once: right answers, and no value
#     is left cached after a refusal.
#  2. Lua against vault-dev over HTTPS: 64 threads, each with its own lua_State that loads the
#     module, miss the same key at the same moment (a barrier, and 300 ms of injected latency on
#     the first request): vault-dev's counters must show exactly one GET.
#  3. Lua against vault-dev: 16 threads, each with its own lua_State, hammer 8 keys with resolve,
#     resolve_handle, stats and invalidate; every value must be right, and vault-dev must have
#     seen few requests (misses after invalidations only).
set -u
H="$ROOT/$BUILD/tests/helpers/cache_threads"
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0

"$H" core 16 3000 > core.out 2>&1
rc=$?
cat core.out
p=$(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p' core.out | tail -n1)
f=$(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p' core.out | tail -n1)
pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
[ $rc -eq 0 ] || { echo "FAILED cache_threads core exited $rc"; fail=$((fail + 1)); }

# the Lua part: an orchestrator (plain lua5.4) starts vault-dev, runs the helper, reads counters
cat > states.lua <<'LUA'
-- run in every thread's own lua_State by cache_threads (globals THREAD and barrier())
local vks = require 'vault_keysource'
local mode = os.getenv('CACHE_MODE')
local prefix = os.getenv('CACHE_PW_PREFIX')
local function ks(p) return { vault_mount = 'secret', vault_path = 'cache-thr/' .. p } end
if mode == 'single' then
  barrier()
  local v, _, code = vks.resolve(ks('single'))
  if v ~= prefix .. 'single' then error('wrong value for single: ' .. tostring(code)) end
else
  local n = tonumber(os.getenv('CACHE_ITER'))
  barrier()
  for i = 1, n do
    local k = (THREAD * 7 + i * 3) % 8
    local want = prefix .. 'k' .. k
    if i % 5 == 0 then
      local h <close> = vks.resolve_handle(ks('k' .. k))
      if not h or h:len() ~= #want or h:reveal() ~= want then error('wrong handle value for k' .. k) end
    else
      local v, _, code = vks.resolve(ks('k' .. k), { domain = 'example.com' })
      if v ~= want then error('wrong value for k' .. k .. ': ' .. tostring(code)) end
    end
    if i % 50 == 0 then
      local s = vks.stats()
      if s.hits < 1 or not s.protection then error('stats') end
    end
    if THREAD == 1 and i % 100 == 0 then vks.invalidate(ks('k' .. (i % 8))) end
  end
end
LUA

cat > orchestrate.lua <<'LUA'
local vaultdev = require 'vaultdev'
local H, W = arg[1], arg[2]
local PREFIX = 'cache-thr-PW-'
local pass, fail = 0, 0
local function check(cond, what)
  if cond then pass = pass + 1; print('ok     ' .. what) else fail = fail + 1; print('FAILED ' .. what) end
end
local vd = vaultdev.start { tls = true }
local ok, err = pcall(function()
  vd:kv2_put('cache-thr/single', { key = PREFIX .. 'single' })
  for k = 0, 7 do vd:kv2_put('cache-thr/k' .. k, { key = PREFIX .. 'k' .. k }) end
  local env = string.format("VAULT_ADDR='%s' VAULT_CACERT='%s' VAULT_TOKEN='%s' CACHE_PW_PREFIX='%s' ",
    vd.addr, vd.cacert, vd.root_token, PREFIX)
  local function run(mode, threads, extra)
    local cmd = env .. "CACHE_MODE=" .. mode .. " " .. (extra or '') .. " '" .. H .. "' lua " .. threads ..
      " '" .. W .. "/states.lua' > '" .. W .. "/" .. mode .. ".out' 2>&1"
    local _, _, code = os.execute(cmd)
    local f = io.open(W .. '/' .. mode .. '.out'); local out = f:read('a'); f:close()
    io.write(out)
    return code == 0
  end

  vd:reset_counters()
  vd:fault { action = 'latency', latency_ms = 300, method = 'GET', path_prefix = '/v1/secret/data/cache-thr/single', count = 1 }
  check(run('single', 64), '64 lua_States missing one key together all got the right value')
  check(vd:count('GET', '/v1/secret/data/cache-thr/single') == 1,
    string.format('64 concurrent misses made exactly one request (vault-dev counted %d)',
      vd:count('GET', '/v1/secret/data/cache-thr/single')))

  vd:reset_counters()
  check(run('hammer', 16, 'CACHE_ITER=400'), '16 lua_States x 400 lookups of 8 keys: every value right')
  local total = 0
  for k = 0, 7 do total = total + vd:count('GET', '/v1/secret/data/cache-thr/k' .. k) end
  -- 8 first misses + at most one miss per invalidation (4 rounds of 8 by thread 1)
  check(total >= 8 and total <= 8 + 4, string.format('vault-dev saw %d requests for 6400 lookups', total))
end)
vd:stop()
if not ok then fail = fail + 1; print('FAILED orchestrator: ' .. tostring(err)) end
print(string.format('%d passed, %d failed', pass, fail))
os.exit(fail == 0 and 0 or 1)
LUA

lua5.4 orchestrate.lua "$H" "$W" > lua.out 2>&1
rc=$?
cat lua.out
p=$(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\1/p' lua.out | tail -n1)
f=$(sed -nE 's/^([0-9]+) passed, ([0-9]+) failed$/\2/p' lua.out | tail -n1)
pass=$((pass + ${p:-0})); fail=$((fail + ${f:-0}))
[ $rc -eq 0 ] || [ "${f:-0}" -gt 0 ] || { echo "FAILED orchestrator exited $rc"; fail=$((fail + 1)); }
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
