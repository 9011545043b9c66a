#!/usr/bin/env bash
# `make install` honours PREFIX and DESTDIR and `make uninstall` removes exactly what it installed:
# a staged install (DESTDIR + PREFIX=/opt/x) and a direct one into a PREFIX; every installed file
# is listed in the manifest and the list matches the tree; the installed programs and man pages
# work from there; uninstall leaves only empty directories and keeps files it did not install; a
# reinstall over an older install (a file the new one no longer has) is still removed entirely;
# the manifest is not trusted with relative or '..' paths; without a manifest uninstall removes
# the list the Makefile installs.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
mk() { timeout 600 make -s -C "$ROOT" BUILD="$BUILD" "$@" >> make.log 2>&1; }
files_under() { (cd "$1" && find . \( -type f -o -type l \) | sed 's|^\.||' | LC_ALL=C sort); }
rm -rf stage direct; : > make.log

# 1. staged: DESTDIR=stage PREFIX=/opt/x
mk install DESTDIR="$W/stage" PREFIX=/opt/x; rc=$?
check "staged install succeeds" '[ $rc -eq 0 ]'
P=$W/stage/opt/x
M=$P/share/vault-keysource/installed-files
check "nothing is written outside DESTDIR/PREFIX" '[ "$(ls -A stage)" = opt ] && [ "$(ls -A stage/opt)" = x ]'
for f in bin/vks bin/vks-policy lib/lua/5.4/vault_keysource.so share/vault-keysource/lua/kumo.lua \
         share/vault-keysource/lua/policy_host.lua share/man/man1/vks.1 share/man/man1/vks-audit.1 \
         share/man/man1/vks-envelope.1 share/man/man1/vks-policy.1 share/doc/vault-keysource/README.md; do
  check "installed: $f" '[ -s "$P/$f" ]'
done
check "programs are 0755, the module and pages 0644" \
  '[ "$(stat -c %a "$P/bin/vks")" = 755 ] && [ "$(stat -c %a "$P/lib/lua/5.4/vault_keysource.so")" = 644 ] &&
   [ "$(stat -c %a "$P/share/man/man1/vks.1")" = 644 ]'
check "the manifest names files by their final path (no DESTDIR)" \
  'grep -qx /opt/x/bin/vks "$M" && ! grep -q "$W" "$M"'
listed=$(sed "s|^|$W/stage|" "$M" | LC_ALL=C sort)
actual=$(files_under stage | sed "s|^|$W/stage|" | grep -vxF "$M")
check "the manifest lists exactly the files installed" '[ "$listed" = "$actual" ]'
check "the installed man page is the checkout's" 'cmp -s "$ROOT/man/vks-audit.1" "$P/share/man/man1/vks-audit.1"'
out=$("$P/bin/vks" audit verify --help 2>&1); rc=$?
check "the installed vks runs" '[ $rc -eq 0 ] && [[ "$out" == *"--key-file"* ]]'

mkdir -p "$P/bin" && echo keep > "$P/bin/not-ours"
mk uninstall DESTDIR="$W/stage" PREFIX=/opt/x; rc=$?
check "staged uninstall succeeds" '[ $rc -eq 0 ]'
check "uninstall leaves only the file it did not install" '[ "$(files_under stage)" = /opt/x/bin/not-ours ]'
rm -f "$P/bin/not-ours"
check "our own directories are gone, shared ones stay empty" \
  '[ ! -e "$P/share/vault-keysource" ] && [ ! -e "$P/share/doc/vault-keysource" ] && [ -d "$P/share/man/man1" ]'

# 2. direct: PREFIX=<dir>, no DESTDIR; the installed host finds its Lua files and the module
D=$W/direct/px
mk install PREFIX="$D"; rc=$?
check "direct install into PREFIX succeeds" '[ $rc -eq 0 ] && [ -x "$D/bin/vks-policy" ]'
printf 'local vks = require "vault_keysource"\nprint(package.searchpath("vault_keysource", package.cpath))\nprint(vks.resolve({ key_data = "prefix-ok" }))\nreturn 0\n' > probe.lua
out=$(cd / && env -u LUA_PATH -u LUA_CPATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 "$D/bin/vks-policy" --script "$W/probe.lua" 2>&1)
check "the installed vks-policy loads the module from PREFIX and resolves" \
  '[[ "$out" == *"$D/lib/lua/5.4/vault_keysource.so"* ]] && [[ "$out" == *prefix-ok* ]]'
mk uninstall PREFIX="$D"; rc=$?
check "direct uninstall leaves no file" '[ $rc -eq 0 ] && [ -z "$(files_under "$D")" ]'

# 3. a reinstall keeps the earlier manifest's entries (a file only the older install had)
mk install DESTDIR="$W/stage" PREFIX=/opt/x
echo old > "$P/share/vault-keysource/lua/removed_since.lua"
echo /opt/x/share/vault-keysource/lua/removed_since.lua >> "$M"
mk install DESTDIR="$W/stage" PREFIX=/opt/x; rc=$?
check "a reinstall succeeds and keeps the older entry" '[ $rc -eq 0 ] && grep -qx /opt/x/share/vault-keysource/lua/removed_since.lua "$M"'
check "... listed once" '[ "$(sort "$M" | uniq -d | wc -l)" -eq 0 ]'
# entries that could reach outside: never followed
mkdir -p "$W/stage/outside"; echo keep > "$W/stage/outside/victim"; echo keep > "$W/stage/rel-victim"
printf '%s\n' /opt/x/../../outside/victim rel-victim >> "$M"
mk uninstall DESTDIR="$W/stage" PREFIX=/opt/x; rc=$?
check "uninstall after the reinstall removes the old file too" '[ $rc -eq 0 ] && [ ! -e "$P/share/vault-keysource" ]'
check "relative and '..' manifest entries are skipped" '[ -f "$W/stage/outside/victim" ] && [ -f "$W/stage/rel-victim" ]'
check "... and named" 'grep -q "skipping /opt/x/../../outside/victim" make.log && grep -q "skipping rel-victim" make.log'
rm -rf "$W/stage/outside" "$W/stage/rel-victim"
check "the staged tree is back to empty directories" '[ -z "$(files_under stage)" ]'

# 4. no manifest (lost): the Makefile's own list is removed
mk install DESTDIR="$W/stage" PREFIX=/opt/x
rm -f "$M"
mk uninstall DESTDIR="$W/stage" PREFIX=/opt/x; rc=$?
check "uninstall without a manifest removes the installed list" '[ $rc -eq 0 ] && [ -z "$(files_under stage)" ]'

grep -v '^make' make.log | head -20
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
