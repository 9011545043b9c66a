#!/usr/bin/env bash
# `make demo` (scripts/demo) really works: both destinations authenticate at the relay, the
# restricted lookup is refused, the audit trail verifies, none of the demo's generated secrets is
# printed, and everything it started is stopped: at the end, on SIGTERM to the script alone, and on
# a Ctrl-C to its process group.
set -u
set -m   # job control: background jobs keep SIGINT (a non-interactive shell would ignore it)
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
DEMO="$ROOT/scripts/demo"
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

pids_of() { # the pids the demo reported as listening
  sed -n 's/.*listening on .* (pid \([0-9]*\)).*/\1/p' "$1"
}
all_dead() {
  local p
  for p in "$@"; do kill -0 "$p" 2>/dev/null && return 1; done
  return 0
}
wait_for_line() { # FILE PATTERN: up to 120 s for a state, not a timing assertion
  local i
  for i in $(seq 1 1200); do grep -q "$2" "$1" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}

# --- a full run ---------------------------------------------------------------------------------
mkdir -p tmp1
TMPDIR=$W/tmp1 VKS_DEMO_SECRETS_FILE=$W/demo-secrets.txt BUILD=$BUILD \
  "$DEMO" > demo.out 2>&1
rc=$?
cat demo.out
check "the demo exits 0" '[ $rc -eq 0 ]'
check "example.com authenticated (235)" \
  'grep -A40 "^\[4/7\]" demo.out | grep -q "round 1: auth: OK 235"'
check "example.net authenticated (235)" \
  'grep -A40 "^\[5/7\]" demo.out | grep -q "round 1: auth: OK 235"'
check "the egress paths are shown with the password as a Vault keysource" \
  '[ "$(grep -c "smtp_auth_plain_password = { vault_mount = \"secret\", vault_path = \"smtp-auth/example" demo.out)" -ge 2 ]'
check "the transcript shows AUTH PLAIN redacted" 'grep -q "C: AUTH PLAIN <redacted>" demo.out'
check "cache statistics show a hit on the second round" '[ "$(grep -c "cache: .*hits=1 misses=1" demo.out)" -eq 2 ]'
check "the restricted lookup is refused" 'grep -q "FAILED restricted" demo.out'
check "the relay saw four accepted AUTHs over TLS and no rejected one" \
  '[ "$(grep -c "tls=True result=235 accepted" demo.out)" -eq 4 ] && ! grep -q "535 rejected" demo.out'
check "the audit trail lists one event per lookup (4 served, 1 refused)" \
  'grep -q "5 lookups," demo.out && [ "$(grep -cE "^ +[0-9]+ +[0-9:.]+ +(miss|hit) +ok " demo.out)" -eq 4 ] && grep -qE "denied +restricted" demo.out'
check "audit events carry who and for what (user, domain, destination, secret, version)" \
  'grep -q "daniel for example.net via 127.0.0.1 *secret/smtp-auth/example.net#password v1 ENC" demo.out'
check "vks audit verify checks the whole trail" \
  'grep -q "vks audit verify" demo.out && grep -qE "OK: [0-9]+ chains?, [0-9]+ events verified" demo.out'
check "the demo stopped what it started" \
  'p=$(pids_of demo.out); [ -n "$p" ] && all_dead $p'
check "its work directory is gone" '[ -z "$(ls -A tmp1)" ]'
check "the demo's generated secrets were written for this check" '[ "$(wc -l < demo-secrets.txt)" -ge 4 ]'
check "none of the demo's secrets (token, key, passwords) appears in its output" \
  '! grep -qF -f demo-secrets.txt demo.out'

# --- SIGTERM to the script alone: the trap must stop the servers --------------------------------
mkdir -p tmp2
TMPDIR=$W/tmp2 BUILD=$BUILD "$DEMO" > demo-term.out 2>&1 &
dpid=$!
if wait_for_line demo-term.out '^\[3/7\]'; then
  kill -TERM "$dpid"
  wait "$dpid"; trc=$?
  check "SIGTERM: the demo exits non-zero" '[ $trc -ne 0 ]'
  check "SIGTERM: the servers it started are stopped" 'p=$(pids_of demo-term.out); [ -n "$p" ] && all_dead $p'
  check "SIGTERM: its work directory is gone" '[ -z "$(ls -A tmp2)" ]'
else
  kill -TERM "$dpid" 2>/dev/null; wait "$dpid"
  bad "SIGTERM: the demo did not reach step 3"
fi

# --- Ctrl-C: SIGINT to the whole process group, as a terminal does -------------------------------
mkdir -p tmp3
TMPDIR=$W/tmp3 BUILD=$BUILD "$DEMO" > demo-int.out 2>&1 &
dpid=$!
if wait_for_line demo-int.out '^\[3/7\]'; then
  kill -INT -- "-$dpid"
  wait "$dpid"; irc=$?
  check "Ctrl-C: the demo says it was interrupted and exits non-zero" \
    '[ $irc -ne 0 ] && grep -q "interrupted" demo-int.out'
  check "Ctrl-C: nothing it started is left running" 'p=$(pids_of demo-int.out); [ -n "$p" ] && all_dead $p'
  check "Ctrl-C: its work directory is gone" '[ -z "$(ls -A tmp3)" ]'
else
  kill -INT -- "-$dpid" 2>/dev/null; wait "$dpid"
  bad "Ctrl-C: the demo did not reach step 3"
fi

# --- a missing build is a clear error, not a hang ------------------------------------------------
out=$(BUILD=$W/no-such-build "$DEMO" 2>&1); mrc=$?
check "a missing build: clear message, exit non-zero" '[ $mrc -ne 0 ] && [[ "$out" == *"is missing"* ]]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
