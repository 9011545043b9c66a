#!/usr/bin/env bash
# One keyring loaded from the real environment, shared by 8 threads that decrypt (v2 and legacy)
# and encrypt concurrently; every result must be right. Listed in tests/tsan-suites so `make tsan`
# runs it under ThreadSanitizer (Criterion cannot run under TSan).
set -u
T="$ROOT/$BUILD/tests/helpers/envelope_tool"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
iters=2000
[ "${BUILD}" = build-tsan ] && iters=200
out=$(VKS_ENCRYPTION_KEYS="k2:ZW52ZWxvcGUtdGVzdC1rZXktQi0wMTIzNDU2Nzg5YWI=,k1:ZW52ZWxvcGUtdGVzdC1rZXktQS0wMTIzNDU2Nzg5YWI=" \
      "$T" threads 8 "$iters" 2>&1)
rc=$?
echo "$out"
if [ $rc -eq 0 ] && [ "$out" = "threads: 8 x $iters, 0 failures" ]; then
  echo "1 passed, 0 failed"
else
  echo "envelope_tool threads exited $rc"
  echo "0 passed, 1 failed"
  exit 1
fi
