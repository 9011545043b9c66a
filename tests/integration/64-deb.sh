#!/usr/bin/env bash
# `make deb` (scripts/build-deb, docs/packaging.md): the package's control fields (version from
# packaging/deb/changelog and the same as `vks-agent --version`, the build machine's architecture,
# Depends from dpkg-shlibdeps); its file list (every program, the module in Debian's multiarch Lua
# path, every man page of the tree, the unit, the example configuration, copyright and changelog;
# nothing from the build tree; everything root:root with Debian's modes); md5sums and the
# maintainer scripts; the extracted programs and module work (lua5.4 loads the module from the
# extracted tree; it still exports only the entry point); the unit passes systemd-analyze verify;
# two builds are the same bytes; lintian (installed by bootstrap) finds no error. The checks are
# shown to fail on doctored packages. Installing and purging: scripts/deb-install-check.
set -u
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
# a check with a loop runs it in a subshell, so `exit 1` fails that check by name instead of ending
# the whole suite silently
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
PKG=vault-keysource

# a sanitizer build (make asan / make tsan) is refused, with the reason
if ldd "$ROOT/$BUILD/vks" 2> /dev/null | grep -qE 'lib(asan|tsan)\.so'; then
  out=$(timeout 600 make -s -C "$ROOT" BUILD="$BUILD" deb 2>&1); rc=$?
  check "make deb refuses a sanitizer build and says why" '[ $rc -ne 0 ] && [[ "$out" == *"not a sanitizer build"* ]]'
  echo "$pass passed, $fail failed"
  [ "$fail" -eq 0 ]; exit
fi

VERSION=$(dpkg-parsechangelog -l "$ROOT/packaging/deb/changelog" -SVersion)
ARCH=$(dpkg --print-architecture)
MA=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
DEB=$ROOT/$BUILD/${PKG}_${VERSION}_${ARCH}.deb
rm -f "$DEB"
timeout 900 nice make -s -C "$ROOT" BUILD="$BUILD" deb > make.log 2>&1; rc=$?
tail -n 3 make.log
check "make deb succeeds" '[ $rc -eq 0 ] && [ -f "$DEB" ]'
[ -f "$DEB" ] || { echo "$pass passed, $fail failed"; exit 1; }
sum1=$(sha256sum < "$DEB")
out=$(timeout 60 make -s -C "$ROOT" BUILD="$BUILD" SAN=address deb 2>&1); rc=$?
check "make deb SAN=... is refused before anything is built, and says why" \
  '[ $rc -ne 0 ] && [[ "$out" == *"not a sanitizer build"* ]] && [ "$(sha256sum < "$DEB")" = "$sum1" ]'

# 1. control
field() { dpkg-deb -f "$1" "$2"; }
check "Package, Version (the changelog's), Architecture (dpkg's)" \
  '[ "$(field "$DEB" Package)" = $PKG ] && [ "$(field "$DEB" Version)" = "$VERSION" ] && [ "$(field "$DEB" Architecture)" = "$ARCH" ]'
out=$("$ROOT/$BUILD/vks-agent" --version)
check "vks-agent --version agrees with the package version ($VERSION)" '[[ "$out" == "vks-agent $VERSION "* ]]'
dep=$(field "$DEB" Depends)
echo "Depends: $dep"
for lib in libc6 libcurl4 libssl3 libjson-c5 libevent-2.1-7 liblua5.4-0 adduser; do
  check "Depends names $lib" '[[ ", $dep," == *", $lib "* || ", $dep," == *", $lib,"* ]]'
done
check "Depends lists no package twice" '[ -z "$(tr "," "\n" <<<"$dep" | awk "{print \$1}" | sort | uniq -d)" ]'

# 2. the file list
list() { dpkg-deb -c "$1" | awk '{ print $1, $2, $6 }' | sed 's| \./| /|; s|\(.\)/$|\1|'; }
list "$DEB" > list.txt
files=$(awk '$1 !~ /^d/ { print $3 }' list.txt)
want=(/usr/bin/vks /usr/bin/vks-policy /usr/sbin/vks-agent "/usr/lib/$MA/lua/5.4/vault_keysource.so"
      /lib/systemd/system/vks-agent.service "/usr/share/$PKG/agent/vks-agent.toml.example"
      /usr/share/man/man8/vks-agent.8.gz "/usr/share/doc/$PKG/copyright" "/usr/share/doc/$PKG/changelog.gz")
for f in "$ROOT"/man/*.1; do want+=("/usr/share/man/man1/$(basename "$f").gz"); done
for f in "$ROOT"/lua/*.lua; do want+=("/usr/share/$PKG/lua/$(basename "$f")"); done
missing=$(for f in "${want[@]}"; do grep -qxF "$f" <<<"$files" || echo "$f"; done)
check "the package has every program, the module, each man page, the unit, the example, the Lua helpers" '[ -z "$missing" ]'
[ -z "$missing" ] || echo "  missing: $missing"
# what must never be packaged: build products, test and dev-server files, the install manifest
stray() { grep -E '\.(o|d|a)$|/obj/|/tests?/|/test_|vault-dev$|/bench/|bench_|installed-files$|\.orig$|~$' <<<"$1"; }
check "nothing from the build tree (objects, archives, tests, vault-dev, the manifest)" '[ -z "$(stray "$files")" ]'
stray "$files" | head -5
check "every path is under /usr or /lib/systemd/system (nothing in /etc: no conffiles)" \
  '[ -z "$(awk "{print \$3}" list.txt | grep -vE "^(/|/usr(/.*)?|/lib|/lib/systemd|/lib/systemd/system(/.*)?)$")" ]'
check "every entry is root/root" '[ -z "$(awk "\$2 != \"root/root\"" list.txt)" ]'
check "programs are -rwxr-xr-x, directories drwxr-xr-x, the rest -rw-r--r--" \
  '[ -z "$(awk "(\$3 ~ /^\/usr\/s?bin\// && \$1 != \"-rwxr-xr-x\") || (\$1 ~ /^d/ && \$1 != \"drwxr-xr-x\") ||
            (\$3 !~ /^\/usr\/s?bin\// && \$1 !~ /^d/ && \$1 != \"-rw-r--r--\")" list.txt)" ]'
check "the man pages are compressed" '[ -z "$(grep "^/usr/share/man/.*[^z]$" <<<"$files")" ]'

# 3. the control archive
rm -rf ctl x; dpkg-deb -e "$DEB" ctl; dpkg-deb -x "$DEB" x
check "postinst, prerm, postrm: 0755, valid sh, set -e" \
  '(for s in postinst prerm postrm; do [ "$(stat -c %a ctl/$s)" = 755 ] && sh -n ctl/$s && grep -qx "set -e" ctl/$s || exit 1; done)'
check "postinst creates the user, enables the unit with deb-systemd-helper, starts it only on systemd" \
  'grep -q "adduser --system" ctl/postinst && grep -q "deb-systemd-helper enable" ctl/postinst &&
   grep -q "^if \[ -d /run/systemd/system \]" ctl/postinst'
check "no conffiles (nothing is installed in /etc)" '[ ! -e ctl/conffiles ]'
check "md5sums lists every file with its sum" \
  '(cd x && md5sum --quiet -c ../ctl/md5sums) && [ "$(wc -l < ctl/md5sums)" -eq "$(wc -l <<<"$files")" ]'
size=$(field "$DEB" Installed-Size); total=$(find x -type f -printf '%s\n' | awk '{ s += $1 } END { print int(s / 1024) }')
check "Installed-Size ($size KiB) is the extracted files' size ($total KiB) plus rounding" \
  '[ "$size" -ge "$total" ] && [ "$size" -le $((total + total / 10 + 64)) ]'
check "the unit starts the agent only once it is configured" \
  'grep -qx "ConditionPathExists=/etc/vks-agent/agent.toml" x/lib/systemd/system/vks-agent.service'

# 4. the extracted programs and module
out=$(x/usr/bin/vks --help 2>&1); rc=$?
check "the packaged vks runs" '[ $rc -eq 0 ] && [[ "$out" == "usage: vks "* ]]'
out=$(x/usr/sbin/vks-agent --help 2>&1); rc=$?
check "the packaged vks-agent runs" '[ $rc -eq 0 ] && [[ "$out" == "usage: vks-agent "* ]]'
check "the programs are stripped (no symbol table)" \
  '! readelf -S x/usr/bin/vks x/usr/sbin/vks-agent x/usr/bin/vks-policy | grep -q "\.symtab"'
check "the programs are linked with full RELRO" \
  '(for f in x/usr/bin/vks x/usr/bin/vks-policy x/usr/sbin/vks-agent; do readelf -d $f | grep -q "FLAGS.*NOW" || exit 1; done)'
SO=$W/x/usr/lib/$MA/lua/5.4/vault_keysource.so
out=$(cd / && env -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH_5_4 LUA_CPATH="$W/x/usr/lib/$MA/lua/5.4/?.so" lua5.4 -e '
  local v = require "vault_keysource"
  print(package.searchpath("vault_keysource", package.cpath)); print(v.resolve({ key_data = "deb-module-ok" }))' 2>&1); rc=$?
check "lua5.4 loads the packaged module from the extracted tree and resolves" \
  '[ $rc -eq 0 ] && [ "$out" = "$(printf "%s\n%s" "$SO" deb-module-ok)" ]'
[ $rc -eq 0 ] || echo "$out" | head -3
check "the stripped module still exports only luaopen_vault_keysource" '"$ROOT/tests/check-exports" "$SO" > /dev/null'
check "the packaged man pages are the tree's" \
  'zcmp -s "$ROOT/agent/vks-agent.8" x/usr/share/man/man8/vks-agent.8.gz && zcmp -s "$ROOT/man/vks.1" x/usr/share/man/man1/vks.1.gz'
if command -v systemd-analyze > /dev/null; then
  # the unit as installed, its program and man page taken from the extracted tree
  verify() { sed "s|/usr/sbin/vks-agent|$W/x/usr/sbin/vks-agent|g" "$1" > vks-agent.service &&
             MANPATH=$W/x/usr/share/man systemd-analyze verify "$W/vks-agent.service" > verify.log 2>&1; }
  verify x/lib/systemd/system/vks-agent.service; rc=$?
  check "systemd-analyze verify accepts the packaged unit" '[ $rc -eq 0 ]'
  [ $rc -eq 0 ] || cat verify.log
  sed 's|^ExecStart=/usr/sbin/vks-agent|ExecStart=/usr/sbin/vks-agnet|' x/lib/systemd/system/vks-agent.service > doctored.service
  verify doctored.service; rc=$?
  check "... and rejects a doctored one (a program that is not there)" '[ $rc -ne 0 ]'
fi

# 5. reproducible: the same tree gives the same bytes
timeout 600 make -s -C "$ROOT" BUILD="$BUILD" deb > make2.log 2>&1
check "a second make deb gives the same bytes" '[ "$(sha256sum < "$DEB")" = "$sum1" ]'

# 6. lintian
if command -v lintian > /dev/null; then
  lintian --display-info "$DEB" > lintian.log 2>&1; rc=$?
  grep -E '^[EWI]:' lintian.log
  check "lintian: no error" '[ $rc -eq 0 ] && ! grep -q "^E:" lintian.log'
else
  echo "note: lintian is not installed (scripts/bootstrap installs it): not run"
fi

# 7. the checks catch doctored packages: a stray object file, a file not owned by root, a
#    package without its copyright file (a lintian error)
rm -rf dr; cp -a x dr; cp -a ctl dr/DEBIAN
mkdir -p dr/usr/share/$PKG/obj; : > dr/usr/share/$PKG/obj/vks_cache.o
rm dr/usr/share/doc/$PKG/copyright
dpkg-deb --root-owner-group -b dr doctored.deb > /dev/null 2>&1
check "a stray object file in a package is caught" '[ -n "$(stray "$(list doctored.deb | awk "{print \$3}")")" ]'
cp -a x dr2; cp -a ctl dr2/DEBIAN; chown -R nobody:nogroup dr2/usr/bin 2> /dev/null
dpkg-deb -b dr2 owned.deb > /dev/null 2>&1
check "a package whose files are not root's is caught" '[ -n "$(list owned.deb | awk "\$2 != \"root/root\"")" ]'
if command -v lintian > /dev/null; then
  lintian doctored.deb > lintian-doctored.log 2>&1; rc=$?
  check "lintian fails a package without a copyright file" '[ $rc -ne 0 ] && grep -q "^E: .*no-copyright-file" lintian-doctored.log'
fi
rm -rf x dr dr2

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
