#!/usr/bin/env bash
# `make install` gives a working vks-policy: run from the installed tree with no LUA_PATH/LUA_CPATH
# and no checkout on the paths, it finds kumo.lua/shaping.lua under share/vault-keysource/lua and
# vault_keysource.so under lib/lua/5.4, and runs a policy from the installed examples' style.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

make -s -C "$ROOT" install BUILD="$BUILD" DESTDIR="$W/inst" PREFIX=/opt/vks > install.log 2>&1
rc=$?
check "make install succeeds" '[ $rc -eq 0 ]'
P=$W/inst/opt/vks
check "vks-policy and vks are installed" '[ -x "$P/bin/vks-policy" ] && [ -x "$P/bin/vks" ]'
check "the Lua files and the module are installed" \
  '[ -f "$P/share/vault-keysource/lua/kumo.lua" ] && [ -f "$P/lib/lua/5.4/vault_keysource.so" ]'

cat > probe.lua <<'LUA'
local kumo = require 'kumo'
local vks = require 'vault_keysource'
local where = package.searchpath('kumo', package.path)
print('kumo from ' .. where)
print('module ' .. (package.searchpath('vault_keysource', package.cpath) or '?'))
print('resolve ' .. tostring(vks.resolve({ key_data = 'installed-ok' })))
return 0
LUA
out=$(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
      "$P/bin/vks-policy" --script "$W/probe.lua" 2>&1); prc=$?
echo "$out"
check "the installed host loads kumo from its share directory" \
  '[ $prc -eq 0 ] && [[ "$out" == *"kumo from $P/share/vault-keysource/lua/kumo.lua"* ]]'
check "the installed host loads the installed module and resolves" \
  '[[ "$out" == *"module $P/lib/lua/5.4/vault_keysource.so"* ]] && [[ "$out" == *"resolve installed-ok"* ]]'

cat > pol.lua <<'LUA'
local kumo = require 'kumo'
kumo.on('get_egress_path_config', function(domain)
  return kumo.make_egress_path { smtp_auth_plain_username = 'daniel',
    smtp_auth_plain_password = { key_data = 'installed-ok' } }
end)
LUA
out=$(cd / && env -u LUA_PATH -u LUA_CPATH "$P/bin/vks-policy" "$W/pol.lua" --domain example.com 2>&1); prc=$?
echo "$out"
check "the installed host runs a policy (no AUTH without --check-auth)" \
  '[ $prc -eq 0 ] && [[ "$out" == *"password: resolved for daniel (redacted)"* ]]'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
