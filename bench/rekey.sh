#!/usr/bin/env bash
# vks rekey of REKEY_BENCH_N credentials (default 10000) in vault-dev: wall time and Vault requests
# per credential (docs/benchmarks.md "vks rekey"). A measurement, not a test.
exec python3 "$(dirname "$0")/rekey_bench.py"
