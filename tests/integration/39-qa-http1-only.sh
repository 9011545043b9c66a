#!/usr/bin/env bash
# The Vault client offers only http/1.1 in TLS ALPN, never h2: over HTTP/2 the X-Vault-Token
# header would also be kept in nghttp2's HPACK table, which is ordinary heap that neither the
# arena nor vks_curlmem's wiping allocators cover (docs/qa-review.md, finding 3).
# A real TLS server (openssl s_server offering h2 and http/1.1) reports what the client offered.
set -u
W="${VKS_SUITE_WORK:-$(mktemp -d)}"
cd "$W" || exit 1
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
TOKEN=$(grep -m1 '^qa-alpn-token-' "$ROOT/tests/test-secrets.d/qa.txt")

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout key.pem -out cert.pem \
  -days 1 -subj /CN=127.0.0.1 >/dev/null 2>&1 || { bad "cannot make a test certificate"; echo "$pass passed, $fail failed"; exit 1; }
rm -f in; mkfifo in
openssl s_server -accept 127.0.0.1:0 -cert cert.pem -key key.pem -alpn h2,http/1.1 -naccept 1 \
  < in > server.raw 2>&1 &
spid=$!
exec 3> in  # keeps the server's stdin open
stop() { exec 3>&-; kill "$spid" 2>/dev/null; wait "$spid" 2>/dev/null; rm -f server.raw in; }
trap stop EXIT
port=
for _ in $(seq 100); do
  port=$(sed -n 's/^ACCEPT .*:\([0-9][0-9]*\)$/\1/p' server.raw 2>/dev/null)
  [ -n "$port" ] && break
  sleep 0.1
done
[ -n "$port" ] && ok "openssl s_server listens on 127.0.0.1:$port" || bad "openssl s_server did not start"

PORT=$port TOKEN=$TOKEN lua5.4 -e '
local vks = require "vault_keysource"
vks.setup { address = "https://127.0.0.1:" .. os.getenv("PORT"), skip_verify = true,
  token = os.getenv("TOKEN"), timeout = "3s", max_retries = 0 }
local v, msg, code = vks.resolve { vault_mount = "secret", vault_path = "alpn" }
print("resolve: " .. tostring(v == nil and code or "a value"))
' > client.out 2>&1
for _ in $(seq 50); do grep -aq 'ALPN protocols advertised' server.raw && break; sleep 0.1; done
grep -a 'ALPN protocols advertised by the client:' server.raw > alpn.out
if grep -q 'advertised by the client: http/1.1$' alpn.out; then
  ok "the client offered only http/1.1"
else
  bad "the client offered: $(sed 's/.*client: //' alpn.out) ($(head -c 200 client.out))"
fi
grep -q 'h2' alpn.out && bad "h2 was offered" || ok "h2 was not offered"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
