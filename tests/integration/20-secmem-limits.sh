#!/usr/bin/env bash
# Process-level proof of the arena's protection status and its two degradation policies:
#  - unrestricted (root, or within the 8 MiB limit): locked, excluded from dumps, guarded, wiped on fork;
#  - RLIMIT_MEMLOCK = 64 KiB with CAP_IPC_LOCK dropped (root ignores the limit otherwise):
#      default mode serves, warns once on stderr naming the limit, reports locked=0;
#      require_locked (config or VKS_REQUIRE_LOCKED) fails closed with locked_memory.
set -u
P="$ROOT/$BUILD/tests/helpers/secmem_probe"
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0
ok()   { echo "ok   - $1"; pass=$((pass + 1)); }
bad()  { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
val()  { sed -n "s/^$2=//p" "$1" | head -n 1; }

# Runs the probe under a 64 KiB memlock limit with CAP_IPC_LOCK gone (setpriv or capsh).
limited() {
  local tool=$1; shift
  if [ "$(id -u)" -ne 0 ]; then
    prlimit --memlock=65536 "$P" "$@"
  elif [ "$tool" = capsh ]; then
    prlimit --memlock=65536 capsh --drop=cap_ipc_lock -- -c "exec \"\$0\" \"\$@\"" "$P" "$@"
  else
    prlimit --memlock=65536 setpriv --inh-caps=-ipc_lock --bounding-set=-ipc_lock "$P" "$@"
  fi
}

# 1. unrestricted
"$P" status > full.out 2> full.err; rc=$?
check "unrestricted: init ok (rc=$rc)" '[ $rc -eq 0 ] && [ "$(val full.out init)" = ok ]'
check "unrestricted: locked=1" '[ "$(val full.out locked)" = 1 ]'
check "unrestricted: dontdump=1 and guard_pages=1" '[ "$(val full.out dontdump)" = 1 ] && [ "$(val full.out guard_pages)" = 1 ]'
kv=$(uname -r); maj=${kv%%.*}; rest=${kv#*.}; min=${rest%%.*}
if [ "$maj" -gt 4 ] || { [ "$maj" -eq 4 ] && [ "$min" -ge 14 ]; }; then
  check "unrestricted: wipe_on_fork=1 on kernel $kv" '[ "$(val full.out wipe_on_fork)" = 1 ]'
fi
check "unrestricted: no warning" '! grep -q WARNING full.err'

# 2. limited, default mode: serves, warns once
limited setpriv status > deg.out 2> deg.err; rc=$?
check "limited: default mode still serves (rc=$rc)" '[ $rc -eq 0 ] && [ "$(val deg.out alloc)" = ok ]'
check "limited: status says not locked" '[ "$(val deg.out locked)" = 0 ]'
check "limited: the other protections stay" '[ "$(val deg.out dontdump)" = 1 ] && [ "$(val deg.out guard_pages)" = 1 ]'
check "limited: exactly one warning" '[ "$(grep -c WARNING deg.err)" = 1 ]'
check "limited: the warning names what failed and the limit" \
  'grep -q "NOT LOCKED" deg.err && grep -q "RLIMIT_MEMLOCK is 65536 bytes" deg.err && grep -q "mlock failed" deg.err'

# 3. limited, require_locked: fails closed
limited setpriv status --require-locked > req.out 2> req.err; rc=$?
check "require_locked: init fails closed (rc=$rc)" '[ $rc -eq 3 ] && [ "$(val req.out init)" = locked_memory ]'
check "require_locked: allocations refused" '[ "$(val req.out alloc)" = locked_memory ]'
check "require_locked: the error names the limit" 'grep -q "^error=.*RLIMIT_MEMLOCK is 65536 bytes" req.out'
check "require_locked: no degraded-mode warning" '! grep -q WARNING req.err'

# 4. the same through capsh and the environment
VKS_REQUIRE_LOCKED=true limited capsh status > env.out 2> env.err; rc=$?
check "VKS_REQUIRE_LOCKED=true under capsh: fails closed (rc=$rc)" '[ $rc -eq 3 ] && [ "$(val env.out alloc)" = locked_memory ]'

# 5. an arena that fits the limit is locked even without the capability
limited setpriv status --require-locked --bytes 65536 > fit.out 2> fit.err; rc=$?
check "64 KiB arena under a 64 KiB limit: locked (rc=$rc)" '[ $rc -eq 0 ] && [ "$(val fit.out locked)" = 1 ]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
