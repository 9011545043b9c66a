#!/usr/bin/env bash
# Concurrency of the process-wide cache (listed in tests/tsan-suites: `make tsan` runs it under
# ThreadSanitizer, which Criterion cannot run under).
#  1. core: 16 threads hammer 40 keys through a 24-entry cache while another invalidates; then
#     64 concurrent misses for one key make exactly one fetch (tests/helpers/cache_threads.c).
set -u
H="$ROOT/$BUILD/tests/helpers/cache_threads"
cd "${VKS_SUITE_WORK:-/tmp}" || exit 1
"$H" core 16 3000 > core.out 2>&1
rc=$?
cat core.out
[ $rc -eq 0 ] || echo "cache_threads core exited $rc"
exit $rc
