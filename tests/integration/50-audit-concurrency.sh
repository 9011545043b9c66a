#!/usr/bin/env bash
# 4 processes x 8 threads appending to one audit file at once (sync and async): every line is a
# whole event, every line parses, and each process's chain verifies on its own.
set -u
W="$ROOT/$BUILD/tests/helpers/audit_writer"
VKS="$ROOT/$BUILD/vks"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
KEY=QVVESVRLRVktVEVTVC01ZTFmMGM5YTc3ZDJiM2M0ZTg=
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
clean() { env -u VKS_AUDIT_FILE -u VKS_AUDIT_MODE -u VKS_AUDIT_ON_FAILURE -u VKS_AUDIT_KEY \
              -u VKS_AUDIT_KEY_FILE -u VKS_AUDIT_STDERR -u VKS_AUDIT_SYSLOG "$@"; }
EV=400
for mode in sync async; do
  f="$PWD/shared-$mode.jsonl"
  rm -f "$f"
  pids=()
  for p in 1 2 3 4; do
    clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE="$f" VKS_AUDIT_MODE=$mode VKS_AUDIT_QUEUE=100000 \
      "$W" 8 $EV > "w-$mode-$p.out" 2>&1 &
    pids+=($!)
  done
  rcs=0
  for pid in "${pids[@]}"; do wait "$pid" || rcs=$((rcs + 1)); done
  check "$mode: every writer exited 0 (no sanitizer report)" '[ $rcs -eq 0 ] && ! grep -q "Sanitizer" w-$mode-*.out'
  okall=1
  for p in 1 2 3 4; do grep -q "^ok=$((8 * EV)) unavailable=0 other=0$" "w-$mode-$p.out" || okall=0; done
  check "$mode: 4 processes x 8 threads x $EV events all accepted" '[ $okall -eq 1 ]'
  lines=$(wc -l < "$f")
  check "$mode: $lines lines = 4 x (start + $((8 * EV)) + close)" '[ "$lines" -eq $((4 * (8 * EV + 2))) ]'
  bad_lines=$(/usr/bin/python3 -c '
import json, sys
bad = 0
for line in open(sys.argv[1], "rb"):
    try:
        o = json.loads(line)
        assert line.endswith(b"}\n") and o["v"] == 1
    except Exception:
        bad += 1
print(bad)' "$f")
  check "$mode: every line parses as one JSON event" '[ "$bad_lines" = 0 ]'
  out=$(clean VKS_AUDIT_KEY="$KEY" "$VKS" audit verify "$f"); rc=$?
  check "$mode: every per-process chain verifies" '[ $rc -eq 0 ] && [[ "$out" == *"OK: 4 chains, $((4 * (8 * EV + 2))) events verified"* ]]'
  check "$mode: 4 chains, each closed" '[ "$(grep -c ": OK, $((8 * EV + 2)) events, .*closed$" <<<"$out")" -eq 4 ]'
done
# many Lua states in one process (as a KumoMTA-style host): each state's callback gets exactly
# its own lookups' lines; states without a callback get none; the file has everyone's, one chain
H="$ROOT/$BUILD/tests/helpers/cache_threads"
f="$PWD/states.jsonl"; rm -f "$f"
cat > states.lua <<'LUA'
local vks = require 'vault_keysource'
vks.setup { audit = { file = os.getenv('AUDIT_LOG'), callback = true } }
local got = {}
if THREAD % 2 == 1 then vks.set_audit_callback(function(l) got[#got + 1] = l end) end
for _ = 1, 50 do
  local v, msg, code = vks.resolve({ key_data = 'relay-pw-AUDIT50-data-a1b2' }, { tag = 'thread-' .. THREAD })
  assert(v, tostring(code))
end
local lookups = 0
for _, l in ipairs(got) do
  if l:find('"type":"secret.lookup"', 1, true) then
    lookups = lookups + 1
    assert(l:find('"tag":"thread-' .. THREAD .. '"', 1, true), 'a line of another Lua state')
  end
end
assert(lookups == (THREAD % 2 == 1 and 50 or 0), 'callback lines: ' .. lookups)
LUA
out=$(clean VKS_AUDIT_KEY="$KEY" AUDIT_LOG="$f" "$H" lua 8 states.lua 2>&1); rc=$?
check "8 Lua states: each callback got only its own 50 lookups" '[ $rc -eq 0 ]' || echo "$out" | tail -5
n=$(grep -c '"type":"secret.lookup"' "$f")
check "8 Lua states: the file has all 400 lookups ($n)" '[ "$n" -eq 400 ]'
out=$(clean VKS_AUDIT_KEY="$KEY" "$VKS" audit verify "$f"); rc=$?
check "8 Lua states: one chain, verified" '[ $rc -eq 0 ] && [[ "$out" == *"OK: 1 chain"* ]]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
