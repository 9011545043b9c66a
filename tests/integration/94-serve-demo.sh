#!/usr/bin/env bash
# make ui (scripts/ui-demo): starts vault-dev with demo data and vks serve, prints the URL and the
# demo logins, the printed login works over HTTPS with the printed CA, and Ctrl-C (SIGINT) stops
# everything it started and removes its work dir.
set -u
cd "$ROOT"
pass=0; fail=0
ok() { if [ "$1" = 0 ]; then pass=$((pass + 1)); echo "ok   - $2"; else fail=$((fail + 1)); echo "FAIL - $2"; fi; }
port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
out=$(mktemp)
VKS_UI_PORT=$port setsid timeout 120 scripts/ui-demo >"$out" 2>&1 &
pid=$!
for _ in $(seq 1 200); do grep -q "Ctrl-C stops everything" "$out" && break; sleep 0.1; done
grep -q "Ctrl-C stops everything" "$out"; ok $? "the demo prints its URL and logins"
grep -q "https://127.0.0.1:$port/" "$out"; ok $? "the URL is printed"
ca=$(sed -n 's/.*trust it, or accept the warning): //p' "$out")
work=$(sed -n 's/^  work dir: \([^ ]*\) .*/\1/p' "$out")
pw=$(awk '$1 == "support" { print $2 }' "$out")
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$ca" --max-time 10 -H 'Content-Type: application/json' \
  -d "{\"method\":\"userpass\",\"username\":\"support\",\"password\":\"$pw\"}" "https://127.0.0.1:$port/api/v1/login")
[ "$code" = 200 ]; ok $? "the printed demo login works (HTTP $code)"
n=$(curl -s --cacert "$ca" --max-time 10 -c "$work/jar" -H 'Content-Type: application/json' \
  -d "{\"method\":\"userpass\",\"username\":\"auditor\",\"password\":\"$(awk '$1 == "auditor" { print $2 }' "$out")\"}" \
  "https://127.0.0.1:$port/api/v1/login" >/dev/null && curl -s --cacert "$ca" -b "$work/jar" --max-time 10 \
  "https://127.0.0.1:$port/api/v1/credentials" | /usr/bin/python3 -c 'import json,sys; print(len(json.load(sys.stdin)["credentials"]))')
[ "${n:-0}" -ge 3 ]; ok $? "demo data is there ($n credentials)"
kill -INT "$pid"
wait "$pid"; rc=$?
[ $rc = 0 ]; ok $? "Ctrl-C ends the demo with status 0 (got $rc)"
left=$(pgrep -f -- "$work" | wc -l)
[ "$left" = 0 ]; ok $? "no process of the demo is left ($left)"
[ ! -e "$work" ]; ok $? "its work dir is removed"
rm -f "$out"
echo "$pass passed, $fail failed"
[ $fail = 0 ]
