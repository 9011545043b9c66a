#!/usr/bin/env bash
# `vks audit verify` against real logs written by real processes (tests/helpers/audit_writer):
# a clean log verifies; deleting, inserting, modifying, reordering a line or truncating the tail
# (with an anchored head) is each detected with the right first bad sequence number; exit codes;
# and a full disk (a 16 KiB tmpfs, /dev/full): deny refuses lookups, allow serves, nothing crashes.
set -u
W="$ROOT/$BUILD/tests/helpers/audit_writer"
VKS="$ROOT/$BUILD/vks"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
KEY=QVVESVRLRVktVEVTVC01ZTFmMGM5YTc3ZDJiM2M0ZTg=
VALUE=relay-password-AUDIT-9c1e4f
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
clean() { env -u VKS_AUDIT_FILE -u VKS_AUDIT_MODE -u VKS_AUDIT_ON_FAILURE -u VKS_AUDIT_KEY \
              -u VKS_AUDIT_KEY_FILE -u VKS_AUDIT_STDERR -u VKS_AUDIT_SYSLOG "$@"; }
verify() { clean VKS_AUDIT_KEY="$KEY" "$VKS" audit verify "$@"; }

# a clean log
clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE="$PWD/clean.jsonl" "$W" 2 20 > w.out
check "writer: 40 events recorded" 'grep -q "^ok=40 unavailable=0 other=0$" w.out'
check "log: start + 40 lookups + close" '[ "$(wc -l < clean.jsonl)" -eq 42 ]'
out=$(verify clean.jsonl); rc=$?
check "clean log verifies (exit 0)" '[ $rc -eq 0 ]'
check "... reports OK with count and head" '[[ "$out" == *"OK: 1 chain, 42 events verified, head seq 41 mac "* ]]'
check "... and the chain closed" '[[ "$out" == *", closed"* ]]'
check "no value bytes in the log" '! grep -qF "$VALUE" clean.jsonl && ! grep -qF "$KEY" clean.jsonl'
head=$(tail -n 1 clean.jsonl | sed -E 's/.*"mac":"([0-9a-f]{64})"}$/\1/')

tamper() { # name, sed/awk program producing the tampered file, expected first bad seq
  local name=$1 prog=$2 seq=$3
  eval "$prog" < clean.jsonl > t.jsonl
  out=$(verify t.jsonl "${@:4}"); rc=$?
  check "$name: detected (exit 1)" '[ $rc -eq 1 ]'
  if [ -n "$seq" ]; then
    check "$name: first bad seq $seq" '[[ "$out" == *"first bad seq $seq "* ]]'
  fi
}
tamper "delete line 11" "sed '11d'" 11
tamper "insert a replayed line" "sed '20r /dev/stdin' <(sed -n 5p clean.jsonl) | cat" ""
tamper "insert a copy after line 20" "awk 'NR==20{print; print l5; next} NR==5{l5=\$0} {print}'" 4
tamper "modify a destination" "sed '15s/mx0.example.com/mx9.example.com/; 15s/mx1.example.com/mx9.example.com/'" 14
tamper "reorder lines 30 and 31" "awk 'NR==30{h=\$0; next} NR==31{print; print h; next} {print}'" 30
tamper "delete the first line" "sed '1d'" 1
tamper "truncate the tail (anchored head)" "head -n 30" "" --head "$head"
out=$(verify clean.jsonl --head "$head"); rc=$?
check "the anchored head is found in the untouched log" '[ $rc -eq 0 ] && [[ "$out" == *"anchored head $head: found"* ]]'

# exit codes and keys
out=$(clean "$VKS" audit verify clean.jsonl 2>&1); rc=$?
check "no key: structure only, exit 3" '[ $rc -eq 3 ] && [[ "$out" == *"UNVERIFIED"* ]]'
printf '%s' AUDITKEY-TEST-5e1f0c9a77d2b3c4e8 > audit.key; chmod 644 audit.key
out=$(clean "$VKS" audit verify --key-file audit.key clean.jsonl 2>&1); rc=$?
check "a 0644 key file is refused (exit 2)" '[ $rc -eq 2 ] && [[ "$out" == *"group or others"* ]]'
chmod 600 audit.key
out=$(clean "$VKS" audit verify --key-file audit.key clean.jsonl 2>&1); rc=$?
check "the same key from a 0600 file verifies" '[ $rc -eq 0 ]'
out=$(verify missing.jsonl 2>&1); rc=$?
check "missing file: exit 2" '[ $rc -eq 2 ]'
out=$(verify 2>&1); rc=$?
check "no file: usage, exit 2" '[ $rc -eq 2 ] && [[ "$out" == *"usage: vks audit verify"* ]]'
out=$(verify --head nothex clean.jsonl 2>&1); rc=$?
check "bad --head: exit 2" '[ $rc -eq 2 ]'
: > empty.jsonl
out=$(verify empty.jsonl); rc=$?
check "an empty log is not OK" '[ $rc -eq 1 ] && [[ "$out" == *"no audit events"* ]]'
out=$("$VKS" nosuch cmd 2>&1); rc=$?
check "unknown command group: exit 2 with the command list" '[ $rc -eq 2 ] && [[ "$out" == *"vks audit verify"* ]]'
out=$("$VKS" cred --help 2>/dev/null); rc=$?
check "vks cred --help: exit 0, that group's commands on stdout" '[ $rc -eq 0 ] && [[ "$out" == *"vks cred reset"* ]] && [[ "$out" != *"vks audit verify"* ]]'
out=$("$VKS" audit 2>&1 >/dev/null); rc=$?
check "vks audit alone: exit 2, the group's commands on stderr" '[ $rc -eq 2 ] && [[ "$out" == *"vks audit report"* ]]'
out=$(verify --quiet clean.jsonl); rc=$?
check "--quiet prints only the verdict" '[ $rc -eq 0 ] && [ "$(printf "%s\n" "$out" | wc -l)" -eq 1 ]'

# full disk: /dev/full
out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE=/dev/full VKS_AUDIT_ON_FAILURE=deny "$W" 2 10 2>w.err); rc=$?
check "/dev/full, deny: every lookup refused, no crash" '[ $rc -eq 0 ] && [ "$out" = "ok=0 unavailable=20 other=0" ]'
out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE=/dev/full VKS_AUDIT_ON_FAILURE=allow "$W" 2 10 2>w.err); rc=$?
check "/dev/full, allow: every lookup served, no crash" '[ $rc -eq 0 ] && [ "$out" = "ok=20 unavailable=0 other=0" ]'
check "... warned once" '[ "$(grep -c "serving anyway" w.err)" -eq 1 ]'

# full disk: a real 16 KiB tmpfs that fills up mid-run
MNT="$PWD/tiny"
mkdir -p "$MNT"
if mount -t tmpfs -o size=16k tmpfs "$MNT" 2>/dev/null; then
  trap 'umount "$MNT" 2>/dev/null' EXIT
  out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE="$MNT/audit.jsonl" VKS_AUDIT_ON_FAILURE=deny "$W" 4 50 2>w.err); rc=$?
  ok_n=$(sed -E 's/ok=([0-9]+).*/\1/' <<<"$out"); un=$(sed -E 's/.*unavailable=([0-9]+).*/\1/' <<<"$out")
  check "tmpfs full, deny: some served, the rest refused, none lost ($out)" '[ $rc -eq 0 ] && [ "$ok_n" -gt 0 ] && [ "$un" -gt 0 ] && [ $((ok_n + un)) -eq 200 ]'
  n=$(grep -c '"type":"secret.lookup"' "$MNT/audit.jsonl")
  check "tmpfs full, deny: every served lookup is in the log ($n)" '[ "$n" -ge "$ok_n" ]'
  rm -f "$MNT/audit.jsonl"
  out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_FILE="$MNT/audit.jsonl" VKS_AUDIT_ON_FAILURE=allow "$W" 4 50 2>w.err); rc=$?
  check "tmpfs full, allow: all served ($out)" '[ $rc -eq 0 ] && [ "$out" = "ok=200 unavailable=0 other=0" ]'
  umount "$MNT"; trap - EXIT
else
  bad "cannot mount a tmpfs (not root?)"
fi

# a stalled stderr sink (a FIFO nobody reads; the shell keeps it open so writers never get EPIPE):
# every lookup ends within the write deadline with the policy's answer, in C and through Lua
rm -f stall.fifo; mkfifo stall.fifo; exec 7<>stall.fifo
out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_STDERR=1 VKS_AUDIT_TIMEOUT_MS=200 VKS_AUDIT_ON_FAILURE=deny \
      timeout 60 "$W" 4 100 2>stall.fifo); rc=$?
ok_n=$(sed -E 's/ok=([0-9]+).*/\1/' <<<"$out"); un=$(sed -E 's/.*unavailable=([0-9]+).*/\1/' <<<"$out")
check "stalled stderr, deny: every lookup answered, the rest refused ($out)" '[ $rc -eq 0 ] && [ "$un" -gt 0 ] && [ $((ok_n + un)) -eq 400 ]'
out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_STDERR=1 VKS_AUDIT_TIMEOUT_MS=200 VKS_AUDIT_ON_FAILURE=allow \
      timeout 60 "$W" 4 100 2>stall.fifo); rc=$?
check "stalled stderr, allow: every lookup served ($out)" '[ $rc -eq 0 ] && [ "$out" = "ok=400 unavailable=0 other=0" ]'
out=$(clean VKS_AUDIT_KEY="$KEY" VKS_AUDIT_STDERR=1 VKS_AUDIT_TIMEOUT_MS=200 VKS_AUDIT_MODE=async \
      VKS_AUDIT_ON_FAILURE=allow timeout 60 "$W" 4 100 2>stall.fifo); rc=$?
check "stalled stderr, async allow: every lookup served, exit not blocked ($out)" '[ $rc -eq 0 ] && [ "$out" = "ok=400 unavailable=0 other=0" ]'
cat > stall.lua <<'LUA'
local vks = require 'vault_keysource'
vks.setup { audit = { stderr = true, timeout_ms = 200, on_failure = 'deny' } }
local n, refused, code = 0, 0, nil
for _ = 1, 200 do
  local v, _, c = vks.resolve { key_data = 'x' }
  if v then n = n + 1 else refused = refused + 1; code = c end
end
local s = vks.audit_stats()
io.stdout:write(string.format('served=%d refused=%d code=%s timeouts=%d failures=%d\n', n, refused,
  tostring(code), s.timeouts, s.failures))
LUA
out=$(clean VKS_AUDIT_KEY="$KEY" timeout 60 lua5.4 stall.lua 2>stall.fifo); rc=$?
check "stalled stderr through vks.resolve: refused audit_unavailable, counted ($out)" \
  '[ $rc -eq 0 ] && [[ "$out" == *"code=audit_unavailable"* ]] && [[ "$out" != *"timeouts=0 "* ]] && [[ "$out" != *"refused=0 "* ]]'
exec 7>&-; rm -f stall.fifo

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
