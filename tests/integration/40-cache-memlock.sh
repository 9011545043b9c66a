#!/usr/bin/env bash
# The arena's protection status and require_locked as a policy sees them through the Lua module:
#  - unrestricted (root): vks.stats().protection says locked, dontdump, guard_pages, wipe_on_fork;
#  - RLIMIT_MEMLOCK = 64 KiB with CAP_IPC_LOCK dropped: the default mode serves (and warns once),
#    stats say locked = false; setup{cache = {require_locked = true}} raises (the policy fails to
#    load) and, setup being all or nothing, changes nothing; with VKS_REQUIRE_LOCKED=1 lookups fail
#    closed.
set -u
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }

cat > probe.lua <<'LUA'
local vks = require 'vault_keysource'
local mode = arg[1]
local s = vks.stats()
print(string.format('locked=%s dontdump=%s guard_pages=%s wipe_on_fork=%s locked_bytes=%d',
  s.protection.locked, s.protection.dontdump, s.protection.guard_pages, s.protection.wipe_on_fork,
  s.locked_bytes))
local v, msg, code = vks.resolve({ key_data = 'cache-memlock-PW-2c4e6a' })
print('resolve=' .. (v and 'value' or ('nil ' .. tostring(code))))
if mode == 'require' then
  local okk, e = pcall(vks.setup, { cache = { require_locked = true } })
  print('setup_require=' .. (okk and 'accepted' or 'raised'))
  print('setup_error_names_memory=' .. tostring(not okk and tostring(e):find('lock') ~= nil))
  v, msg, code = vks.resolve({ key_data = 'cache-memlock-PW-2c4e6a' })
  print('resolve_after=' .. (v and 'value' or ('nil ' .. tostring(code))))
  print('require_after=' .. tostring(vks.stats().require_locked))
end
LUA

limited() {
  if [ "$(id -u)" -ne 0 ]; then
    prlimit --memlock=65536 "$@"
  else
    prlimit --memlock=65536 capsh --drop=cap_ipc_lock -- -c 'exec "$0" "$@"' "$@"
  fi
}

lua5.4 probe.lua plain > full.out 2> full.err
if grep -q '^locked=true dontdump=true guard_pages=true' full.out; then ok "unrestricted: locked, dontdump and guard pages reported"; else bad "unrestricted status: $(head -1 full.out)"; fi
kv=$(uname -r); maj=${kv%%.*}; rest=${kv#*.}; min=${rest%%.*}
if [ "$maj" -gt 4 ] || { [ "$maj" -eq 4 ] && [ "$min" -ge 14 ]; }; then
  grep -q 'wipe_on_fork=true' full.out && ok "unrestricted: wipe_on_fork on kernel $kv" || bad "wipe_on_fork not reported"
fi

limited lua5.4 probe.lua require > lim.out 2> lim.err
if grep -q '^locked=false' lim.out && grep -q 'locked_bytes=0$' lim.out; then ok "64 KiB memlock, no CAP_IPC_LOCK: stats say not locked, 0 locked bytes"; else bad "limited status: $(head -1 lim.out)"; fi
grep -q '^resolve=value' lim.out && ok "default mode still serves" || bad "default mode: $(grep '^resolve=' lim.out)"
[ "$(grep -ci warn lim.err)" -ge 1 ] && ok "a warning on stderr" || bad "no warning on stderr"
grep -q '^setup_require=raised' lim.out && ok "setup{cache={require_locked=true}} raises" || bad "require_locked: $(grep '^setup_require' lim.out)"
grep -q '^setup_error_names_memory=true' lim.out && ok "the error says why (locking)" || bad "setup error does not mention locking"

VKS_REQUIRE_LOCKED=1 limited lua5.4 probe.lua plain > env.out 2> env.err
# (the audit trail needs the arena too: when it cannot record either, audit's deny policy reports
# audit_unavailable; both codes mean the lookup failed closed)
grep -qE '^resolve=nil (locked_memory|audit_unavailable)$' env.out && ok "VKS_REQUIRE_LOCKED=1: lookups fail closed ($(sed -n 's/^resolve=nil //p' env.out))" || bad "VKS_REQUIRE_LOCKED: $(grep '^resolve=' env.out)"
grep -q '^resolve_after=value' lim.out && grep -q '^require_after=false' lim.out && ok "the failed setup changed nothing (all or nothing): lookups as before" || bad "after the failed setup: $(grep -E '^(resolve|require)_after=' lim.out | tr '\n' ' ')"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
