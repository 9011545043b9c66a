#!/usr/bin/env bash
# `make demo` (scripts/demo) really works: both destinations authenticate at the relay, the
# restricted lookup is refused, a private Postfix relays one message with the password vks-agent
# serves (the relay accepted its AUTH), the audit trail verifies, none of the demo's generated
# secrets is printed, and everything it started is stopped: at the end, on SIGTERM to the script
# alone (also while Postfix and the agent run), and on a Ctrl-C to its process group.
set -u
set -m   # job control: background jobs keep SIGINT (a non-interactive shell would ignore it)
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
W=$PWD
DEMO="$ROOT/scripts/demo"
pass=0; fail=0
ok()  { echo "ok   $1"; pass=$((pass + 1)); }
bad() { echo "FAIL $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }

pids_of() { # the pids the demo reported as listening, and the Postfix master's
  sed -n -e 's/.*listening on .* (pid \([0-9]*\)).*/\1/p' -e 's/.*Postfix master running (pid \([0-9]*\)).*/\1/p' "$1"
}
queue_dir_of() { sed -n 's/.*Postfix master running (pid [0-9]*), queue directory \(.*\)$/\1/p' "$1"; }
in_queue_dir() { # DIR: pids of processes whose working or root directory is in DIR (Postfix's daemons)
  local p
  for p in /proc/[0-9]*; do
    case "$(readlink "$p/cwd" 2>/dev/null) $(readlink "$p/root" 2>/dev/null)" in
      *"$1"*) echo "${p#/proc/}" ;;
    esac
  done
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
  'grep -A40 "^\[4/8\]" demo.out | grep -q "round 1: auth: OK 235"'
check "example.net authenticated (235)" \
  'grep -A40 "^\[5/8\]" demo.out | grep -q "round 1: auth: OK 235"'
check "the egress paths are shown with the password as a Vault keysource" \
  '[ "$(grep -c "smtp_auth_plain_password = { vault_mount = \"secret\", vault_path = \"smtp-auth/example" demo.out)" -ge 2 ]'
check "the transcript shows AUTH PLAIN redacted" 'grep -q "C: AUTH PLAIN <redacted>" demo.out'
check "cache statistics show a hit on the second round" '[ "$(grep -c "cache: .*hits=1 misses=1" demo.out)" -eq 2 ]'
check "the restricted lookup is refused" 'grep -q "FAILED restricted" demo.out'
check "the relay saw four accepted AUTHs over TLS and no rejected one" \
  '[ "$(grep -c "tls=True result=235 accepted" demo.out)" -eq 4 ] && ! grep -q "535 rejected" demo.out'
check "Postfix relayed the message: its log says status=sent with a queue id" \
  'grep -qE "^ +postfix: [0-9A-F]{6,}: to=<rcpt@example.net>, relay=127.0.0.1\[127.0.0.1\]:[0-9]+, .*status=sent \(250 " demo.out'
check "the relay accepted Postfix's AUTH over TLS with the password from Vault (its credential line 3)" \
  'grep -q "relay: AUTH PLAIN as daniel over TLS=True: 235 accepted, the password matched its credential line 3" demo.out'
check "the relay received the message from the authenticated user" \
  'grep -qE "relay: message from <sender@example.test> to <rcpt@example.net>, [0-9]+ bytes, sent by the authenticated user daniel" demo.out'
check "the smtp transport ran chrooted and the map is the relative private/ path" \
  'grep -q "smtp  unix  -  -  y" demo.out && grep -q "smtp_sasl_password_maps = socketmap:unix:private/vks:sasl" demo.out'
check "vks-agent drained and exited 0 on SIGTERM" 'grep -q "vks-agent drained and exited 0 on SIGTERM" demo.out'
check "the audit trail lists one event per lookup (4 served, 1 refused, 2 fields read by the agent)" \
  'grep -q "7 lookups," demo.out && [ "$(grep -cE "^ +[0-9]+ +[0-9:.]+ +(miss|hit) +ok +daniel for example" demo.out)" -eq 4 ] && grep -qE "denied +restricted" demo.out'
# one Vault read for the credential: the user name's read cached the password (a sibling key)
check "the agent's lookups are in the same trail, naming the peer postfix and the protocol" \
  'grep -qE "miss +ok +agent: postfix asked socketmap 127.0.0.1 +secret/smtp-auth/127.0.0.1#username v1$" demo.out && grep -qE "hit +ok +agent: postfix asked socketmap 127.0.0.1 +secret/smtp-auth/127.0.0.1#password v1 ENC$" demo.out'
check "audit events carry who and for what (user, domain, destination, secret, version)" \
  'grep -q "daniel for example.net via 127.0.0.1 *secret/smtp-auth/example.net#password v1 ENC" demo.out'
check "vks audit verify checks the whole trail" \
  'grep -q "vks audit verify" demo.out && grep -qE "OK: [0-9]+ chains?, [0-9]+ events verified" demo.out'
check "the demo stopped what it started" \
  'p=$(pids_of demo.out); [ -n "$p" ] && all_dead $p'
check "no Postfix process is left in its queue directory" \
  'q=$(queue_dir_of demo.out); [ -n "$q" ] && [ -z "$(in_queue_dir "$q")" ]'
check "its work directory (and the Postfix instance) is gone" '[ -z "$(ls -A tmp1)" ] && [ ! -e "$(queue_dir_of demo.out)" ]'
check "the demo's generated secrets were written for this check (token, 2 keys, 3 passwords)" '[ "$(wc -l < demo-secrets.txt)" -ge 6 ]'
check "none of the demo's secrets (token, keys, passwords) appears in its output" \
  '! grep -qF -f demo-secrets.txt demo.out'

# --- SIGTERM to the script alone: the trap must stop the servers --------------------------------
mkdir -p tmp2
TMPDIR=$W/tmp2 BUILD=$BUILD "$DEMO" > demo-term.out 2>&1 &
dpid=$!
if wait_for_line demo-term.out '^\[3/8\]'; then
  kill -TERM "$dpid"
  wait "$dpid"; trc=$?
  check "SIGTERM: the demo exits non-zero" '[ $trc -ne 0 ]'
  check "SIGTERM: the servers it started are stopped" 'p=$(pids_of demo-term.out); [ -n "$p" ] && all_dead $p'
  check "SIGTERM: its work directory is gone" '[ -z "$(ls -A tmp2)" ]'
else
  kill -TERM "$dpid" 2>/dev/null; wait "$dpid"
  bad "SIGTERM: the demo did not reach step 3"
fi

# --- SIGTERM while Postfix and the agent run: both stopped, the instance removed ------------------
mkdir -p tmp4
TMPDIR=$W/tmp4 BUILD=$BUILD VKS_DEMO_HOLD=60 "$DEMO" > demo-term7.out 2>&1 &
dpid=$!
if wait_for_line demo-term7.out 'vks-agent listening on'; then
  q=$(queue_dir_of demo-term7.out)
  running=$(in_queue_dir "$q")
  check "step 7 holding: Postfix's master and daemons run in its queue directory" \
    '[ -n "$q" ] && [ "$(echo $running | wc -w)" -ge 2 ]'
  kill -TERM "$dpid"
  wait "$dpid"; trc=$?
  check "SIGTERM in step 7: the demo exits non-zero" '[ $trc -ne 0 ]'
  check "SIGTERM in step 7: vault-dev, the relay, the agent and the Postfix master are stopped" \
    'p=$(pids_of demo-term7.out); [ "$(echo $p | wc -w)" -eq 4 ] && all_dead $p'
  check "SIGTERM in step 7: no Postfix process is left in its queue directory" '[ -n "$q" ] && [ -z "$(in_queue_dir "$q")" ]'
  check "SIGTERM in step 7: its work directory and the Postfix instance are gone" '[ -z "$(ls -A tmp4)" ] && [ ! -e "$q" ]'
else
  kill -TERM "$dpid" 2>/dev/null; wait "$dpid"
  bad "SIGTERM in step 7: the demo did not start the agent"
fi

# --- Ctrl-C: SIGINT to the whole process group, as a terminal does -------------------------------
mkdir -p tmp3
TMPDIR=$W/tmp3 BUILD=$BUILD "$DEMO" > demo-int.out 2>&1 &
dpid=$!
if wait_for_line demo-int.out '^\[3/8\]'; then
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
