#!/usr/bin/env bash
# Many Lua states on many threads share the module's process-wide runtime: lookups (Vault through
# the cache, and with the cache off, key_data, files) run while one thread keeps changing the
# setup options (runtime swaps under lookups in flight) and states are closed and reopened.
# Every value must be right; run under ThreadSanitizer by `make tsan` (tests/tsan-suites).
set -u
cd "$VKS_SUITE_WORK"
H="$ROOT/$BUILD/tests/helpers/resolver_threads"
pass=0; fail=0
ok()  { echo "ok     $1"; pass=$((pass + 1)); }
bad() { echo "FAILED $1"; fail=$((fail + 1)); }
ITER=${VKS_THREADS_ITER:-60}
[ "${BUILD}" != "${BUILD%tsan}" ] && ITER=20

# vault-dev (HTTPS) and one secret
VD_WORK=$(mktemp -d "$VKS_SUITE_WORK/vd-XXXXXX")
"$ROOT/$BUILD/vault-dev" --addr 127.0.0.1:0 --tls-dir "$VD_WORK/tls" \
    --root-token "$(grep -m1 '^vault-dev-root-TEST' "$ROOT/tests/test-secrets.d/dev.txt")" \
    > "$VD_WORK/vault-dev.out" 2> "$VD_WORK/vault-dev.err" < /dev/null &
VD_PID=$!
trap 'kill $VD_PID 2>/dev/null; wait $VD_PID 2>/dev/null' EXIT
for _ in $(seq 200); do grep -q '^VAULT_CACERT=' "$VD_WORK/vault-dev.out" 2>/dev/null && break; sleep 0.05; done
export VAULT_ADDR=$(sed -n 's/^VAULT_ADDR=//p' "$VD_WORK/vault-dev.out")
export VAULT_CACERT=$(sed -n 's/^VAULT_CACERT=//p' "$VD_WORK/vault-dev.out")
export VAULT_TOKEN=$(grep -m1 '^vault-dev-root-TEST' "$ROOT/tests/test-secrets.d/dev.txt")
[ -n "$VAULT_ADDR" ] || { bad "vault-dev did not start"; echo "$pass passed, $fail failed"; exit 1; }
PW=$(grep -m1 'relay-pw-LUA35' "$ROOT/tests/test-secrets.d/resolver.txt")
KD=$(grep -m1 'keydata-LUA35' "$ROOT/tests/test-secrets.d/resolver.txt")
printf '{"data":{"key":"%s"}}' "$PW" > put.json
curl -sf --cacert "$VAULT_CACERT" -H "X-Vault-Token: $VAULT_TOKEN" -X POST \
     --data @put.json "$VAULT_ADDR/v1/secret/data/smtp-auth/threads" > /dev/null || bad "seeding vault-dev"
rm -f put.json
printf '%s' "$PW" > pw35.file
export PW KD PW_FILE=$VKS_SUITE_WORK/pw35.file

cat > work.lua <<'LUA'
return function(id, iters)
  local vks = require 'vault_keysource'
  local PW, KD = os.getenv('PW'), os.getenv('KD')
  local base = { address = os.getenv('VAULT_ADDR'), ca_cert = os.getenv('VAULT_CACERT'),
                 token = os.getenv('VAULT_TOKEN'), timeout = '20s' }
  local fails = 0
  for i = 1, iters do
    if id == 1 and i % 5 == 0 then
      -- runtime swaps while the other threads are in the middle of lookups
      base.timeout = (i % 10 == 0) and '20s' or '21s'
      local ok = pcall(vks.setup, base)
      if not ok then fails = fails + 1 end
    end
    local v = vks.resolve({ vault_mount = 'secret', vault_path = 'smtp-auth/threads' }, { domain = 'd' .. id })
    if v ~= PW then fails = fails + 1 end
    if vks.resolve({ key_data = KD }) ~= KD then fails = fails + 1 end
    if vks.resolve(os.getenv('PW_FILE')) ~= PW then fails = fails + 1 end
  end
  return fails
end
LUA

out=$(VKS_CACHE_TTL=300 "$H" 8 "$ITER" work.lua 2>&1); rc=$?
echo "$out" | grep -v '^vks' | head -5
[ $rc -eq 0 ] && ok "8 states x $ITER lookups with the cache while setup swaps the runtime" || bad "with the cache: $out"

out=$(VKS_CACHE_TTL=0 "$H" 6 "$((ITER / 2))" work.lua 2>&1); rc=$?
echo "$out" | grep -v '^vks' | head -5
[ $rc -eq 0 ] && ok "6 states x $((ITER / 2)) lookups straight to Vault while setup swaps the runtime" || bad "without the cache: $out"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
