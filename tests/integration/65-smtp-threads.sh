#!/usr/bin/env bash
# The SMTP AUTH probe (src/vks_smtp.c) from 6 threads at once against the real test relay
# (tests/lib/smtprelay.py, STARTTLS, AUTH PLAIN): even threads authenticate (235), odd ones are
# refused (535), every session ends with the relay's answer, and the relay saw every AUTH with
# each thread's EHLO name. Listed in tests/tsan-suites (Criterion cannot run under TSan).
# The password is listed in tests/test-secrets.d/smtp.txt.
set -u
W="${VKS_SUITE_WORK:-/tmp}/smtp-threads"
rm -rf "$W"; mkdir -p "$W"
PW='smtp-threads-PASS-5a7e19c2'
printf 'tuser:%s\n' "$PW" > "$W/creds.txt"
/usr/bin/python3 "$ROOT/tests/lib/smtprelay.py" --creds "$W/creds.txt" --dir "$W" --log "$W/auth.jsonl" \
  > "$W/relay.out" 2> "$W/relay.err" &
relay=$!
trap 'kill $relay 2>/dev/null; wait $relay 2>/dev/null' EXIT
port=""
for _ in $(seq 600); do
  port=$(sed -n 's/^SMTP_PORT=//p' "$W/relay.out")
  [ -n "$port" ] && grep -q '^SMTP_CAFILE=' "$W/relay.out" && break
  sleep 0.1
done
pass=0; fail=0
check() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok   $2"; else fail=$((fail + 1)); echo "FAIL $2"; fi; }
[ -n "$port" ]; check $? "the relay started"
out=$(printf '%s\n' "$PW" | "$ROOT/$BUILD/tests/helpers/smtp_threads" 127.0.0.1 "$port" "$W/cert.pem" tuser 6 4 2>&1)
rc=$?
echo "$out"
check $rc "6 threads x 4 sessions: 235 for the right password, 535 for the wrong one, nothing else"
n=$(grep -c '"event": "auth"' "$W/auth.jsonl")
[ "$n" = 24 ]; check $? "the relay saw 24 AUTH attempts (saw $n)"
for t in 0 1 2 3 4 5; do
  c=$(grep -c "\"ehlo\": \"thread-$t\"" "$W/auth.jsonl")
  [ "$c" = 4 ]; check $? "thread-$t: 4 AUTH attempts at the relay"
done
! grep -qF "$PW" "$W/auth.jsonl" "$W/relay.out" "$W/relay.err" && ! grep -qF "$PW" <<<"$out"
check $? "no password in any output"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
