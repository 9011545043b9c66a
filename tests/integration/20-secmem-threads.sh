#!/usr/bin/env bash
# 16 threads allocate, fill, verify and free secrets of mixed sizes in the shared arena while the
# main thread forks 20 times (each child must see zeros and be able to allocate: no lock is left
# held across fork). Listed in tests/tsan-suites: `make tsan` runs it under ThreadSanitizer
# (Criterion itself cannot run under TSan, see Criterion issue #274).
set -u
P="$ROOT/$BUILD/tests/helpers/secmem_probe"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
"$P" threads 16 50000 20
rc=$?
[ $rc -eq 0 ] || echo "secmem_probe threads exited $rc"
exit $rc
