#!/usr/bin/env bash
# The rockspec: `luarocks --lua-version 5.4 make --tree DIR` (Debian's luarocks) builds the module
# with the project's Makefile and installs it into the tree with no network at all (run in an
# empty network namespace when we can make one); lua5.4 with only that tree's cpath requires it
# and resolves key_data and file keysources; the rock's module exports only the entry point and
# is built with the project's flags; `luarocks remove` takes it away again.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
T=$W/tree
rm -rf "$T" home "$ROOT/build/rock"; mkdir -p home  # build/rock: the rock's own build directory
ROCKSPEC=$ROOT/vault-keysource-dev-1.rockspec
# luarocks finds Lua's headers from the lua5.4 it finds on PATH: not the sanitizer wrapper that
# tests/run puts first in sanitizer builds (the rock itself is built without sanitizers)
LR_PATH=$(tr ':' '\n' <<<"$PATH" | grep -vx "$ROOT/$BUILD/san-bin" | paste -sd:)
lr() { HOME=$W/home PATH=$LR_PATH timeout 120 luarocks --lua-version 5.4 "$@"; }

check "luarocks is installed" 'command -v luarocks > /dev/null'
check "the rockspec is valid for luarocks" \
  'lr lint "$ROCKSPEC" > lint.log 2>&1'
# No network: in a namespace with only a down loopback, any download would fail the install.
NONET=()
if unshare -n true 2>/dev/null; then NONET=(unshare -n); else echo "note: no network namespace here; running with the network"; fi
(cd "$ROOT" && HOME=$W/home PATH=$LR_PATH timeout 900 nice "${NONET[@]}" luarocks --lua-version 5.4 \
   make --tree "$T" "$ROCKSPEC") > rock.log 2>&1; rc=$?
tail -n 5 rock.log
check "luarocks make succeeds${NONET:+ with no network}" '[ $rc -eq 0 ]'
SO=$T/lib/lua/5.4/vault_keysource.so
check "the module is in the tree's lib/lua/5.4" '[ -f "$SO" ]'
check "the rock is registered in the tree" \
  'lr --tree "$T" list --porcelain 2>/dev/null | grep -q "^vault-keysource	dev-1"'
check "the rock's module exports only luaopen_vault_keysource" '"$ROOT/tests/check-exports" "$SO" > /dev/null'
check "the rock was built by the Makefile with the project's flags" \
  'grep -q -- "-fvisibility=hidden" rock.log && grep -q -- "-Werror" rock.log'

printf 'file-keysource-ROCK-6a2f' > pw.txt; chmod 600 pw.txt
cat > use.lua <<'LUA'
local vks = require 'vault_keysource'
print('module ' .. package.searchpath('vault_keysource', package.cpath))
-- values are compared here, never printed (tests/test-secrets.d/install.txt)
print('key_data ' .. tostring(vks.resolve({ key_data = 'keydata-ROCK-31c7e0' }) == 'keydata-ROCK-31c7e0'))
print('file ' .. tostring(vks.resolve(arg[1]) == 'file-keysource-ROCK-6a2f'))
local nope, m2, c2 = vks.resolve('/nonexistent/rock-test')
print('missing ' .. tostring(nope) .. ' ' .. tostring(c2))
LUA
out=$(cd / && env -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_CPATH="$T/lib/lua/5.4/?.so" \
      lua5.4 "$W/use.lua" "$W/pw.txt" 2>&1); rc=$?
echo "$out"
check "lua5.4 with the tree's cpath loads the rock's module" \
  '[ $rc -eq 0 ] && [[ "$out" == *"module $SO"* ]]'
check "... and resolves a key_data keysource" '[[ "$out" == *"key_data true"* ]]'
check "... and a file keysource" '[[ "$out" == *"file true"* ]]'
check "... and a missing file fails with its code, not a raise" '[[ "$out" == *"missing nil file_error"* ]]'
out=$(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 \
      lua5.4 -e "package.cpath='$W/nothing/?.so'; print(pcall(require, 'vault_keysource'))" 2>&1)
check "without the tree on cpath the module is not found (the test is not reading the checkout)" \
  '[[ "$out" == false* ]]'

lr --tree "$T" remove vault-keysource > remove.log 2>&1; rc=$?
check "luarocks remove succeeds and removes the module" '[ $rc -eq 0 ] && [ ! -e "$SO" ]'
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
