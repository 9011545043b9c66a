#!/usr/bin/env bash
# Concurrency of the Vault client against vault-dev: many threads on one client, AppRole renewals
# under load, retries in parallel (tests/helpers/vault_threads.c). Listed in tests/tsan-suites:
# `make tsan` runs it under ThreadSanitizer, which Criterion cannot run under.
set -u
H="$ROOT/$BUILD/tests/helpers/vault_threads"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
if [ ! -x "$ROOT/$BUILD/vault-dev" ]; then
  echo "vault-dev is not built: skipped"
  echo "0 passed, 0 failed"
  exit 0
fi
"$H" > vault-threads.out 2>&1
rc=$?
cat vault-threads.out
[ $rc -eq 0 ] || echo "vault_threads exited $rc"
exit $rc
