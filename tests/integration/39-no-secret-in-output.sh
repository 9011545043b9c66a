#!/usr/bin/env bash
# The adversarial half of "no secret in any output": a Lua script provokes every error path with
# secret-bearing inputs (tokens in keysources and setup, key_data, passwords in Vault next to the
# asked key, envelopes under the wrong key, tampered envelopes, event handlers that raise with a
# secret, a Vault that puts a secret in an error body) and captures stdout, stderr and every
# message; tests/secret-scan must find nothing in them. Then the scanner must catch a secret
# planted in a copy, so this test cannot pass vacuously. Also: the module exports one symbol.
set -u
cd "$VKS_SUITE_WORK"
pass=0; fail=0
ok()   { echo "ok     $1"; pass=$((pass + 1)); }
bad()  { echo "FAILED $1"; fail=$((fail + 1)); }

# 1. the module exports exactly luaopen_vault_keysource
if "$ROOT/tests/check-exports" "$ROOT/$BUILD/vault_keysource.so" > exports.out 2>&1; then
  ok "make check-exports: only luaopen_vault_keysource"
else
  bad "make check-exports: $(cat exports.out)"
fi

# 2. provoke every error path; all output into files the scanner reads
mkdir -p capture
env -u VAULT_ADDR -u VAULT_TOKEN HOME="$VKS_SUITE_WORK" VKS_CACHE_TTL=0 \
    VKS_ENCRYPTION_KEY=cmVzb2x2ZXItdGVzdC1rZXktTFVBMzMtMDEyMzQ1Njc= \
    lua5.4 "$ROOT/tests/lib/provoke_errors.lua" \
    > capture/provoke.out 2> capture/provoke.err
rc=$?
n_msgs=$(grep -c '^MSG ' capture/provoke.out)
n_raise=$(grep -c '^RAISED ' capture/provoke.out)
if [ $rc -eq 0 ] && [ "$n_msgs" -ge 20 ] && [ "$n_raise" -ge 4 ]; then
  ok "provoked $n_msgs failures and $n_raise raised errors"
else
  bad "provoke script: exit $rc, $n_msgs messages, $n_raise raised errors (see capture/provoke.err)"
  grep -v '^MSG\|^RAISED' capture/provoke.out | head -20
fi
# each provoked failure must have come with the code it was meant to produce
if grep -q '^WRONG ' capture/provoke.out; then
  bad "some failures had an unexpected code:"; grep '^WRONG ' capture/provoke.out | cut -c1-200
else
  ok "every provoked failure had its expected code"
fi

# 3. nothing secret in what was captured (messages, stdout, stderr, vault-dev's logs)
if "$ROOT/tests/secret-scan" capture "$VKS_SUITE_WORK" > scan.log 2>&1; then
  ok "secret-scan finds no secret in the captured output ($(tail -1 scan.log))"
else
  bad "secret-scan found secrets:"; cat scan.log
fi

# 4. the scanner is not blind: a secret planted in a copy of the capture is found
plant=$(mktemp -d /tmp/vks-plant-XXXXXX)
cp capture/provoke.out "$plant/provoke.out"
# the secret is taken from the list (never written by this script's own text)
secret=$(grep -v '^#' "$ROOT/tests/test-secrets.d/resolver.txt" | grep -m1 'relay-pw-LUA39')
printf 'a line that leaks %s in the middle\n' "$secret" >> "$plant/provoke.out"
if "$ROOT/tests/secret-scan" "$plant" > "$plant/scan.txt" 2>&1; then
  bad "secret-scan missed a planted secret"
else
  ok "secret-scan catches a planted secret ($(grep -c 'found in' "$plant/scan.txt") hit)"
fi
rm -rf "$plant"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
