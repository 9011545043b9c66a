#!/usr/bin/env bash
# `vks envelope ...` as an operator uses it: genkey, keys, encrypt, check, inspect, rekey through
# a k1 -> k2 rotation, and errors with the documented exit codes. No plaintext on any output
# (the runner's secret scan checks this log).
set -u
V="$ROOT/$BUILD/vks"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
B64_A=ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIzNDU2Nzg5YWI=
B64_B=ZW52ZWxvcGUtdGVzdC1rZXktQi0wMTIzNDU2Nzg5YWI=
PW=relay-pass-ENVELOPE-7c1d
PL=(--mount secret --path smtp-auth/example.com --key password)
pass=0; fail=0
ok()  { echo "ok   - $1"; pass=$((pass + 1)); }
bad() { echo "FAIL - $1"; fail=$((fail + 1)); }
check() { if eval "$2"; then ok "$1"; else bad "$1"; fi; }
run() { env -u VKS_ENCRYPTION_KEY -u VKS_ENCRYPTION_KEY_FILE -u VKS_ENCRYPTION_KEYS \
            -u VKS_ENCRYPTION_KEYRING_FILE -u MAIL_PROXY_ENCRYPTION_KEY "$@"; }
OLD=(VKS_ENCRYPTION_KEYS="k1:$B64_A")
BOTH=(VKS_ENCRYPTION_KEYS="k2:$B64_B,k1:$B64_A")
NEW=(VKS_ENCRYPTION_KEYS="k2:$B64_B")

k=$(run "$V" envelope genkey); rc=$?
check "genkey prints 44 base64 characters of a 32-byte key" '[ $rc -eq 0 ] && [ ${#k} -eq 44 ] && [ "$(printf %s "$k" | base64 -d | wc -c)" -eq 32 ]'
k2=$(run "$V" envelope genkey)
check "genkey gives a different key each time" '[ "$k" != "$k2" ]'
out=$(run VKS_ENCRYPTION_KEYS="new:$k,old:$k2" "$V" envelope keys)
check "a generated key loads; keys lists the primary first" '[[ "$out" == "new"*"VKS_ENCRYPTION_KEYS entry 1  (primary)"* ]] && [[ "$out" == *"old"* ]]'
out=$(run "$V" envelope keys)
check "keys with none configured says so" '[ "$out" = "no encryption keys configured" ]'

e1=$(printf '%s\n' "$PW" | run "${OLD[@]}" "$V" envelope encrypt "${PL[@]}")
check "encrypt: ENC:v2 under the primary, no plaintext in it" '[[ "$e1" == ENC:v2:k1:* ]] && [[ "$e1" != *"$PW"* ]]'
out=$(printf '%s' "$e1" | run "${OLD[@]}" "$V" envelope check "${PL[@]}")
check "check: ok at its place, length only" '[ "$out" = "ok: format 2, key id k1, 24 bytes of plaintext" ]'
out=$(printf '%s' "$e1" | run "${OLD[@]}" "$V" envelope check --mount secret --path smtp-auth/example.com); rc=$?
check "check with another vault_key (default 'key') fails, exit 1" '[ $rc -eq 1 ] && [[ "$out" == "FAILED (decrypt_failed): "*"key '"'"'key'"'"': did not authenticate"* ]]'
out=$(printf '%s' "$e1" | run "$V" envelope inspect)
check "inspect needs no key" '[ "$out" = "format 2 (v2, bound to its place), key id k1" ]'

# rotation k1 -> k2 with rekey
e2=$(printf '%s' "$e1" | run "${BOTH[@]}" "$V" envelope rekey "${PL[@]}" 2>rekey.err)
check "rekey moves the value to the primary k2" '[[ "$e2" == ENC:v2:k2:* ]]'
e3=$(printf '%s' "$e2" | run "${BOTH[@]}" "$V" envelope rekey "${PL[@]}" 2>rekey2.err)
check "rekey of an up-to-date value: unchanged, same text" '[ "$e3" = "$e2" ] && grep -q "^unchanged" rekey2.err'
out=$(printf '%s' "$e2" | run "${NEW[@]}" "$V" envelope check "${PL[@]}")
check "after k1 is retired the rekeyed value reads" '[ "$out" = "ok: format 2, key id k2, 24 bytes of plaintext" ]'
out=$(printf '%s' "$e1" | run "${NEW[@]}" "$V" envelope check "${PL[@]}"); rc=$?
check "... and a value left under k1 fails loudly" '[ $rc -eq 1 ] && [[ "$out" == *"unknown key id '"'"'k1'"'"' (keyring has: k2)"* ]]'
leg=$(printf '%s' "$PW" | run "${OLD[@]}" "$V" envelope encrypt --legacy "${PL[@]}")
out=$(printf '%s' "$leg" | run "$V" envelope inspect)
check "encrypt --legacy writes genro's unbound form" '[[ "$out" == "format 1 (legacy"* ]]'
e4=$(printf '%s' "$leg" | run "${BOTH[@]}" "$V" envelope rekey "${PL[@]}" 2>/dev/null)
out=$(printf '%s' "$e4" | run "${NEW[@]}" "$V" envelope check "${PL[@]}")
check "rekey upgrades a legacy value to v2 under k2" '[ "$out" = "ok: format 2, key id k2, 24 bytes of plaintext" ]'

# errors and exit codes
run "${OLD[@]}" "$V" envelope encrypt --mount secret </dev/null >/dev/null 2>usage.err; rc=$?
check "missing --path: usage, exit 2" '[ $rc -eq 2 ] && grep -q "required" usage.err'
printf x | run "$V" envelope encrypt "${PL[@]}" >/dev/null 2>nokey.err; rc=$?
check "encrypt without keys: exit 2, says what to set" '[ $rc -eq 2 ] && grep -q "no encryption key configured" nokey.err'
printf x | run VKS_ENCRYPTION_KEY="$B64_A" VKS_ENCRYPTION_KEY_FILE=/nonexistent "$V" envelope keys >/dev/null 2>conf.err; rc=$?
check "ambiguous key config: exit 2, named" '[ $rc -eq 2 ] && grep -q "both set" conf.err'
out=$(printf 'ENC:v2:k1:AA' | run "$V" envelope inspect); rc=$?
check "inspect of a broken envelope: exit 1, malformed" '[ $rc -eq 1 ] && [[ "$out" == *"malformed envelope"* ]]'
# the limit --help states is the one encrypt enforces (key id 'default')
DEF=(VKS_ENCRYPTION_KEY="$B64_A")
help=$("$V" envelope encrypt --help 2>&1)
head -c 3032 /dev/zero | tr '\0' x | run "${DEF[@]}" "$V" envelope encrypt "${PL[@]}" >max.out 2>max.err; rc=$?
check "--help states 3032 bytes under 'default'; 3032 encrypt" '[[ "$help" == *"at most 3032 bytes under key id"* ]] && [ $rc -eq 0 ] && [ "$(head -c 9 max.out)" = "ENC:v2:de" ]'
head -c 3033 /dev/zero | tr '\0' x | run "${DEF[@]}" "$V" envelope encrypt "${PL[@]}" >over.out 2>over.err; rc=$?
check "... and 3033 are refused, nothing printed" '[ $rc -eq 1 ] && [ ! -s over.out ] && grep -q "at most 3032 bytes" over.err'
check "no plaintext in any stderr file" '! grep -qF "$PW" ./*.err'

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
