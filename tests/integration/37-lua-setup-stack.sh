#!/usr/bin/env bash
# vks.setup from callers with every Lua stack depth from 0 to 40 top-level locals never crashes:
# the setup box is closed with lua_closeslot, because Lua 5.4.4's lua_settop keeps a stale stack
# pointer when a __close metamethod reallocates the stack (fixed in Lua 5.4.5). Before the fix,
# a main chunk with 6 to 9 locals made setup segfault. Each shape runs in its own lua5.4.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
crashed=()
for n in $(seq 0 40); do
  locs=""
  [ "$n" -gt 0 ] && locs="local $(seq -s, -f 'x%g' 1 "$n") = $(seq -s, 1 "$n")"
  printf 'local vks = require "vault_keysource"\n%s\nvks.setup { audit = { stderr = false } }\nvks.setup { }\nprint("after")\n' \
    "$locs" > "shape$n.lua"
  out=$(env -u VKS_AUDIT_STDERR -u VKS_AUDIT_FILE -u VKS_AUDIT_SYSLOG timeout 20 lua5.4 "shape$n.lua" 2>&1); rc=$?
  if [ $rc -ne 0 ] || [ "$out" != after ]; then crashed+=("$n locals: exit $rc"); fi
done
if [ ${#crashed[@]} -eq 0 ]; then ok "setup returns normally below 0..40 top-level locals"
else bad "setup failed: ${crashed[*]}"; fi
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
