#!/usr/bin/env bash
# The envelope API as real processes with a real environment and real key files: key sources and
# their ids, file mode refusal, encrypt/check at a place, AAD binding, rotation, genro interop via
# python3-cryptography, and no secret on any output (the runner's secret scan checks the log).
set -u
T="$ROOT/$BUILD/tests/helpers/envelope_tool"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
B64_A=ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIzNDU2Nzg5YWI=
B64_B=ZW52ZWxvcGUtdGVzdC1rZXktQi0wMTIzNDU2Nzg5YWI=
PW=relay-pass-ENVELOPE-7c1d
PL=(--mount secret --path smtp-auth/example.com --key password)
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
# keep only the environment this test sets
run() { env -u VKS_ENCRYPTION_KEY -u VKS_ENCRYPTION_KEY_FILE -u VKS_ENCRYPTION_KEYS \
            -u VKS_ENCRYPTION_KEYRING_FILE -u MAIL_PROXY_ENCRYPTION_KEY "$@"; }

# key sources and ids
out=$(run VKS_ENCRYPTION_KEY="$B64_A" "$T" keyring)
check "VKS_ENCRYPTION_KEY is id default" '[ "$out" = "$(printf "default\tVKS_ENCRYPTION_KEY")" ]'
printf '%s' envelope-test-key-A-0123456789ab > raw.key; chmod 600 raw.key
out=$(run VKS_ENCRYPTION_KEY_FILE="$PWD/raw.key" "$T" keyring)
check "VKS_ENCRYPTION_KEY_FILE (0600, 32 raw bytes) is id default" '[ "${out%%	*}" = default ]'
chmod 644 raw.key
err=$(run VKS_ENCRYPTION_KEY_FILE="$PWD/raw.key" "$T" keyring 2>&1); rc=$?
check "a 0644 key file is refused (exit 2)" '[ $rc -eq 2 ]'
check "... naming the file and its mode" '[[ "$err" == *"key file \"$PWD/raw.key\" is refused: mode 0644"* ]]'
chmod 600 raw.key
err=$(run VKS_ENCRYPTION_KEY="not base64!" "$T" keyring 2>&1); rc=$?
check "bad base64 key: exit 2, names the variable" '[ $rc -eq 2 ] && [[ "$err" == *"VKS_ENCRYPTION_KEY: key is not valid base64"* ]]'
check "... without echoing it" '[[ "$err" != *"not base64!"* ]]'

# encrypt and check at a place
env2=$(printf '%s\n' "$PW" | run VKS_ENCRYPTION_KEYS="k1:$B64_A" "$T" encrypt "${PL[@]}")
check "encrypt defaults to v2 under the primary id" '[[ "$env2" == ENC:v2:k1:* ]]'
check "the envelope does not contain the password" '[[ "$env2" != *"$PW"* ]]'
out=$(printf '%s' "$env2" | run VKS_ENCRYPTION_KEYS="k1:$B64_A" "$T" check "${PL[@]}")
check "check at the same place: ok, 24 bytes" '[ "$out" = "ok format=2 key_id=k1 length=24" ]'
out=$(printf '%s' "$env2" | run VKS_ENCRYPTION_KEYS="k1:$B64_A" "$T" check --mount secret --path smtp-auth/example.org --key password); rc=$?
check "copied to another path: decrypt_failed, exit 1" '[ $rc -eq 1 ] && [[ "$out" == "failed decrypt_failed: "*"did not authenticate with key id '"'"'k1'"'"'"* ]]'
out=$(printf '%s' "$env2" | run VKS_ENCRYPTION_KEYS="k1:$B64_B" "$T" check "${PL[@]}"); rc=$?
check "same id, other key: did not authenticate" '[ $rc -eq 1 ] && [[ "$out" == *"did not authenticate"* ]]'
out=$(printf 'ENC:v2:k1:%s' 'AAAA*AAA' | run VKS_ENCRYPTION_KEYS="k1:$B64_A" "$T" check "${PL[@]}"); rc=$?
check "malformed is reported as malformed" '[ $rc -eq 1 ] && [[ "$out" == *"malformed envelope: bad base64"* ]]'

# rotation: k1 -> k2
old=$(printf '%s' "$PW" | run VKS_ENCRYPTION_KEYS="k1:$B64_A" "$T" encrypt "${PL[@]}")
new=$(printf '%s' "$PW" | run VKS_ENCRYPTION_KEYS="k2:$B64_B,k1:$B64_A" "$T" encrypt "${PL[@]}")
check "during the overlap new values use k2" '[[ "$new" == ENC:v2:k2:* ]]'
o1=$(printf '%s' "$old" | run VKS_ENCRYPTION_KEYS="k2:$B64_B,k1:$B64_A" "$T" check "${PL[@]}")
o2=$(printf '%s' "$new" | run VKS_ENCRYPTION_KEYS="k2:$B64_B,k1:$B64_A" "$T" check "${PL[@]}")
check "during the overlap old and new values read" '[[ "$o1" == "ok format=2 key_id=k1"* ]] && [[ "$o2" == "ok format=2 key_id=k2"* ]]'
o1=$(printf '%s' "$old" | run VKS_ENCRYPTION_KEYS="k2:$B64_B" "$T" check "${PL[@]}")
check "after k1 is retired its values fail loudly" '[[ "$o1" == *"unknown key id '"'"'k1'"'"' (keyring has: k2)"* ]]'

# genro-mail-proxy interop: its own library writes, we read with its own variable
leg=$(VKS_T_KEY="$B64_A" VKS_T_PLAIN="$PW" /usr/bin/python3 -c '
import base64,os
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
k=base64.b64decode(os.environ["VKS_T_KEY"]); n=os.urandom(12)
print("ENC:"+base64.b64encode(n+AESGCM(k).encrypt(n,os.environ["VKS_T_PLAIN"].encode(),None)).decode())')
out=$(printf '%s' "$leg" | run MAIL_PROXY_ENCRYPTION_KEY="$B64_A" "$T" check --mount any --path where --key ever)
check "genro value under MAIL_PROXY_ENCRYPTION_KEY: legacy, 24 bytes" '[ "$out" = "ok format=1 key_id=- length=24" ]'
out=$(printf '%s' "$leg" | run VKS_ENCRYPTION_KEYS="k2:$B64_B,k1:$B64_A" "$T" check "${PL[@]}")
check "legacy values are tried against every key" '[ "$out" = "ok format=1 key_id=- length=24" ]'
out=$(printf '%s' "$leg" | run VKS_ENCRYPTION_KEYS="k2:$B64_B" "$T" check "${PL[@]}"); rc=$?
check "legacy under no matching key fails" '[ $rc -eq 1 ] && [[ "$out" == *"legacy envelope did not authenticate with any of the 1 configured keys (k2)"* ]]'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
